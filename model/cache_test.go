package model

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestEnsureCreatesAndReuses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", "models")
	s := Spec{Arch: ArchTiny, Seed: 3}
	path, err := Ensure(dir, s)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "tiny-seed3.g2.onnx"); path != want {
		t.Errorf("path %q, want %q", path, want)
	}
	want, err := Bytes(s)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("file differs from Bytes (%d and %d bytes)", len(got), len(want))
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, %v; want 0644", fi.Mode(), err)
	}

	// A file already there is returned as is, never rewritten.
	sentinel := []byte("not rewritten")
	if err := os.WriteFile(path, sentinel, 0o644); err != nil {
		t.Fatal(err)
	}
	again, err := Ensure(dir, s)
	if err != nil || again != path {
		t.Fatalf("second Ensure: %q, %v", again, err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, sentinel) {
		t.Error("second Ensure rewrote the file")
	}
	assertOnly(t, dir, "tiny-seed3.g2.onnx")
}

func TestEnsureConcurrent(t *testing.T) {
	dir := t.TempDir()
	specs := []Spec{{Arch: ArchTiny}, {Arch: ArchTiny, DType: Float16, Input: Uint8}}
	const callers = 8
	paths := make([][]string, len(specs))
	errs := make(chan error, callers*len(specs))
	var wg sync.WaitGroup
	for i, s := range specs {
		paths[i] = make([]string, callers)
		for j := range callers {
			wg.Go(func() {
				p, err := Ensure(dir, s)
				paths[i][j] = p
				errs <- err
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	for i, s := range specs {
		for _, p := range paths[i] {
			if p != paths[i][0] {
				t.Errorf("%s: paths %q and %q", s.Name(), p, paths[i][0])
			}
		}
		want, _ := Bytes(s)
		if got, err := os.ReadFile(paths[i][0]); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: file differs from Bytes (%v)", s.Name(), err)
		}
		names = append(names, FileName(s))
	}
	assertOnly(t, dir, names...)
}

func TestEnsureErrors(t *testing.T) {
	dir := t.TempDir()
	// A directory where the model file should be.
	if err := os.Mkdir(filepath.Join(dir, FileName(Spec{Arch: "tiny"})), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Ensure(dir, Spec{Arch: ArchTiny}); err == nil {
		t.Error("Ensure over a directory: no error")
	}
	// A file where the cache directory should be.
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Ensure(filepath.Join(file, "models"), Spec{Arch: ArchTiny}); err == nil {
		t.Error("Ensure under a file: no error")
	}
}

// assertOnly checks that dir holds exactly the named entries: no temporary
// files are left behind.
func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	if len(got) != len(names) {
		t.Errorf("%s holds %q, want %q", dir, got, names)
		return
	}
	for _, g := range got {
		if !want[g] {
			t.Errorf("%s holds %q, want %q", dir, got, names)
			return
		}
	}
}

func TestDefaultCacheDir(t *testing.T) {
	t.Setenv("INFERD_MODEL_DIR", "/models")
	t.Setenv("XDG_CACHE_HOME", "/xdg")
	t.Setenv("HOME", "/home/u")
	if got := DefaultCacheDir(); got != "/models" {
		t.Errorf("with INFERD_MODEL_DIR: %q", got)
	}
	t.Setenv("INFERD_MODEL_DIR", "")
	if got := DefaultCacheDir(); got != "/xdg/inferd/models" {
		t.Errorf("with XDG_CACHE_HOME: %q", got)
	}
	t.Setenv("XDG_CACHE_HOME", "")
	if got := DefaultCacheDir(); got != "/home/u/.cache/inferd/models" {
		t.Errorf("with HOME only: %q", got)
	}
}

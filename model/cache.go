package model

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// FileExt is the extension of model files written by Ensure.
const FileExt = ".onnx"

// Generation is the version of the generator's output. It is part of the
// cached file name, so a change to an architecture or its weights (which
// bumps it) never serves a stale file from an older inferd's cache.
const Generation = 2

// FileName is the name Ensure gives the model file of s:
// <s.Name()>.g<Generation>.onnx, e.g. "resnet50.g2.onnx".
func FileName(s Spec) string {
	return fmt.Sprintf("%s.g%d%s", s.Name(), Generation, FileExt)
}

// ensureLocks serialises generation per path within the process.
var ensureLocks sync.Map // path → *sync.Mutex

// Ensure returns the path of the model file for s under dir
// (dir/FileName(s)), generating it when missing. The file is written to a
// temporary name in dir and renamed into place, so readers never see a
// partial model; an existing file is never rewritten. Concurrent callers in
// one process wait for a single generation; concurrent processes may both
// generate, and the last rename wins with identical bytes.
func Ensure(dir string, s Spec) (string, error) {
	if err := s.Validate(); err != nil {
		return "", err
	}
	name := FileName(s)
	path := filepath.Join(dir, name)
	if ok, err := exists(path); err != nil || ok {
		return path, err
	}

	mu, _ := ensureLocks.LoadOrStore(path, new(sync.Mutex))
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	if ok, err := exists(path); err != nil || ok {
		return path, err
	}

	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("model: create cache dir: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("model: create temp file: %w", err)
	}
	tmp := f.Name()
	fail := func(err error) (string, error) {
		f.Close()
		os.Remove(tmp)
		return "", err
	}
	if err := Write(f, s); err != nil {
		return fail(fmt.Errorf("model: generate %s: %w", name, err))
	}
	if err := f.Chmod(0o644); err != nil {
		return fail(fmt.Errorf("model: chmod %s: %w", tmp, err))
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("model: sync %s: %w", tmp, err))
	}
	if err := f.Close(); err != nil {
		return fail(fmt.Errorf("model: close %s: %w", tmp, err))
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("model: install %s: %w", name, err)
	}
	return path, nil
}

// exists reports whether a regular file is at path.
func exists(path string) (bool, error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("model: stat %s: %w", path, err)
	case !fi.Mode().IsRegular():
		return false, fmt.Errorf("model: %s is not a regular file", path)
	}
	return true, nil
}

// DefaultCacheDir returns the directory where models are cached:
// $INFERD_MODEL_DIR if set, else $XDG_CACHE_HOME/inferd/models, else
// ~/.cache/inferd/models (or a directory under the system temp directory
// when there is no home directory).
func DefaultCacheDir() string {
	if d := os.Getenv("INFERD_MODEL_DIR"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "inferd", "models")
	}
	if home, err := os.UserHomeDir(); err == nil && home != "" {
		return filepath.Join(home, ".cache", "inferd", "models")
	}
	return filepath.Join(os.TempDir(), "inferd", "models")
}

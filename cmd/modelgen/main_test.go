package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/inferd/inferd/model"
)

func TestRunWritesFile(t *testing.T) {
	s := model.Spec{Arch: model.ArchTiny, DType: model.Float16, Seed: 5}
	out := filepath.Join(t.TempDir(), "m.onnx")
	if err := run(s, out); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want, err := model.Bytes(s)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("wrote %d bytes, want model.Bytes' %d", len(got), len(want))
	}
	if entries, _ := os.ReadDir(filepath.Dir(out)); len(entries) != 1 {
		t.Errorf("%d entries in the output directory, want 1", len(entries))
	}
}

func TestRunUsesCache(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("INFERD_MODEL_DIR", dir)
	s := model.Spec{Arch: model.ArchTiny, Input: model.Uint8}
	if err := run(s, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "tiny-uint8.g2.onnx")); err != nil {
		t.Error(err)
	}
}

func TestRunRejectsBadSpec(t *testing.T) {
	if err := run(model.Spec{Arch: "vgg"}, filepath.Join(t.TempDir(), "m.onnx")); err == nil {
		t.Error("no error")
	}
}

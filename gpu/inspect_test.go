package gpu

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/inferd/inferd/model"
)

// Inspect reads what Open reads, with no session left behind.
func TestInspect(t *testing.T) {
	needLibrary(t)
	for _, c := range []struct {
		spec    model.Spec
		in, out TensorInfo
	}{
		{model.Spec{Arch: model.ArchTiny},
			TensorInfo{Name: "input", Datatype: "FP32", Shape: []int64{-1, 3, 224, 224}},
			TensorInfo{Name: "output", Datatype: "FP32", Shape: []int64{-1, 1000}}},
		{model.Spec{Arch: model.ArchTiny, Input: model.Uint8, Logits: true},
			TensorInfo{Name: "input", Datatype: "UINT8", Shape: []int64{-1, 224, 224, 3}},
			TensorInfo{Name: "output", Datatype: "FP32", Shape: []int64{-1, 1000}}},
	} {
		ins, outs, err := Inspect("", modelPath(t, c.spec))
		if err != nil {
			t.Fatalf("%s: %v", c.spec.Name(), err)
		}
		if len(ins) != 1 || len(outs) != 1 || !sameTensor(ins[0], c.in) || !sameTensor(outs[0], c.out) {
			t.Errorf("%s: Inspect = %+v, %+v; want [%+v], [%+v]", c.spec.Name(), ins, outs, c.in, c.out)
		}
	}
}

func sameTensor(a, b TensorInfo) bool {
	return a.Name == b.Name && a.Datatype == b.Datatype && reflect.DeepEqual(a.Shape, b.Shape)
}

// Files that are not ONNX models are ErrBadModel, in words that leave the
// path to the caller.
func TestInspectBadFiles(t *testing.T) {
	needLibrary(t)
	good, err := os.ReadFile(modelPath(t, model.Spec{Arch: model.ArchTiny}))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		name, path string
		want       string // the error's start
	}{
		{"empty", write("empty.onnx", nil), "not an ONNX model: the file is empty"},
		{"text", write("text.onnx", []byte("this is not a protobuf, just text\n")), "not an ONNX model: onnx runtime says: "},
		{"truncated", write("trunc.onnx", good[:len(good)/2]), "not an ONNX model: onnx runtime says: "},
		{"missing", filepath.Join(dir, "nope.onnx"), "no such file or directory"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := Inspect("", c.path)
			if err == nil {
				t.Fatal("Inspect succeeded")
			}
			if !strings.HasPrefix(err.Error(), c.want) || strings.Contains(err.Error(), dir) || !errors.Is(err, ErrBadModel) {
				t.Errorf("error %q: want ErrBadModel starting %q, without the path", err, c.want)
			}
		})
	}
	if _, _, err := Inspect("", filepath.Join(dir, "nope.onnx")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing file: %v, want fs.ErrNotExist", err)
	}
}

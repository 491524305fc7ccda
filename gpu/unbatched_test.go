package gpu

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/inferd/inferd/model"
)

// passThrough writes a pass-through model of ins (model.WritePassThrough)
// into a test directory.
func passThrough(t testing.TB, ins []model.Tensor) string {
	t.Helper()
	var buf bytes.Buffer
	if err := model.WritePassThrough(&buf, ins); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "pass.onnx")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// The Open Inference Protocol's example model, whose inputs share no batch
// dimension, opens unbatched (one bucket of one "row", the whole tensor,
// whatever max_batch says) and runs at the file's exact shapes.
func TestUnbatchedOIPExample(t *testing.T) {
	m := open(t, passThrough(t, model.OIPExample), Options{Device: "cpu", MaxBatch: 8, Instances: 2})
	if m.Batched() || m.MaxBatch() != 1 || !slices.Equal(m.Buckets(), []int{1}) {
		t.Fatalf("Batched %v, MaxBatch %d, Buckets %v; want false, 1, [1]", m.Batched(), m.MaxBatch(), m.Buckets())
	}
	if why := m.UnbatchedReason(); !strings.Contains(why, `input "input1" [3] shares no batch dimension with input "input0" [2,2]`) {
		t.Errorf("reason %q", why)
	}
	for _, c := range []struct {
		t     TensorInfo
		shape []int64
		bytes int
	}{{m.Inputs()[0], []int64{2, 2}, 16}, {m.Inputs()[1], []int64{3}, 3}, {m.Outputs()[0], []int64{2, 2}, 16}, {m.Outputs()[1], []int64{3}, 3}} {
		if c.t.Batched() || !slices.Equal(c.t.Shape, c.shape) || !slices.Equal(c.t.RowShape(), c.shape) || c.t.RowBytes() != c.bytes {
			t.Errorf("%s: batched %v, shape %v, row shape %v, %d row bytes; want false, %v, %v, %d",
				c.t.Name, c.t.Batched(), c.t.Shape, c.t.RowShape(), c.t.RowBytes(), c.shape, c.shape, c.bytes)
		}
	}
	if _, err := m.Acquire(2); !errors.Is(err, ErrBatchSize) {
		t.Errorf("Acquire(2): %v, want ErrBatchSize", err)
	}
	l, err := m.Acquire(1)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	in0 := []byte{1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0}
	copy(l.Input(0), in0)
	copy(l.Input(1), []byte{1, 0, 0})
	if err := l.Run(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(l.Output(0), in0) || !bytes.Equal(l.Output(1), []byte{0, 1, 1}) {
		t.Errorf("outputs %v, %v; want %v, [0 1 1]", l.Output(0), l.Output(1), in0)
	}
}

func tensor(name, datatype string, shape ...int64) model.Tensor {
	return model.Tensor{Name: name, Datatype: datatype, Shape: shape}
}

// What layout decides, as Inspect and Open read it: batched when the first
// dimensions are symbolic or one shared size, unbatched when they differ
// and every dimension is fixed, refused otherwise, in words that name the
// tensor and the dimension.
func TestLayout(t *testing.T) {
	needLibrary(t)
	for _, c := range []struct {
		name    string
		ins     []model.Tensor
		batched bool
		err     string // the error's text; empty: served
	}{
		{"shared symbolic batch", []model.Tensor{tensor("a", "FP32", -1, 4), tensor("b", "INT64", -1)}, true, ""},
		{"shared fixed batch", []model.Tensor{tensor("a", "FP32", 2, 4), tensor("b", "UINT8", 2)}, true, ""},
		{"oip example", model.OIPExample, false, ""},
		// A symbolic dimension after the batch one: no fixed shape to
		// allocate.
		{"dynamic inner dimension", []model.Tensor{tensor("a", "FP32", -1, -1)}, false,
			`input "a" has shape [N,N]: dimension 1 is dynamic; only the batch dimension (first) may be`},
		// Unbatched, and one dimension is symbolic: neither way works.
		{"unbatched and dynamic", []model.Tensor{tensor("a", "FP32", -1, 2), tensor("b", "FP32", 3), tensor("c", "FP32", 2)}, false,
			`input "a" has shape [N,2]: dimension 0 is dynamic, and the model has no batch dimension (input "c" [2] shares no batch dimension with input "b" [3]), so every dimension must be fixed`},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := passThrough(t, c.ins)
			ins, _, err := Inspect("", path)
			if c.err != "" {
				if err == nil || err.Error() != c.err || !errors.Is(err, ErrBadModel) {
					t.Errorf("Inspect: %v, want ErrBadModel %q", err, c.err)
				}
				_, err := Open(path, Options{Device: "cpu", Logger: quiet})
				if err == nil || !strings.HasPrefix(err.Error(), path+": ") || !strings.HasSuffix(err.Error(), c.err) || !errors.Is(err, ErrBadModel) {
					t.Errorf("Open: %v, want ErrBadModel ending %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ins[0].Batched() != c.batched {
				t.Errorf("Inspect: batched %v, want %v", ins[0].Batched(), c.batched)
			}
			m := open(t, path, Options{Device: "cpu", MaxBatch: 4})
			if m.Batched() != c.batched {
				t.Errorf("Open: batched %v, want %v", m.Batched(), c.batched)
			}
		})
	}
}

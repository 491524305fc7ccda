package host

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/inferd/inferd/config"
	"github.com/inferd/inferd/gpu"
	"github.com/inferd/inferd/internal/testbed"
	"github.com/inferd/inferd/model"
)

// The Open Inference Protocol's example model is hosted unbatched: the
// reason is logged at load, a job is one request of the whole tensors,
// and its outputs keep the file's shapes.
func TestUnbatchedModel(t *testing.T) {
	testbed.NeedORT(t)
	var buf bytes.Buffer
	if err := model.WritePassThrough(&buf, model.OIPExample); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "oip.onnx")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	env := Env{Runtime: config.Runtime{Library: testbed.ORTLibrary(), ModelDir: modelDir}, Log: slog.New(slog.NewTextHandler(&logs, nil))}
	m, err := Open(config.Model{Name: "oip", Path: path, Options: gpu.Options{Device: "cpu", MaxBatch: 8}}, env)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	want := `msg="model served unbatched" model=oip why="input \"input1\" [3] shares no batch dimension with input \"input0\" [2,2]"`
	if !strings.Contains(logs.String(), want) {
		t.Errorf("logs:\n%s\nwant a line with %s", logs.String(), want)
	}
	if m.Batched() || m.MaxBatch() != 1 || m.BatcherConfig().MaxBatchSize != 1 {
		t.Errorf("Batched %v, MaxBatch %d, batcher max %d; want false, 1, 1", m.Batched(), m.MaxBatch(), m.BatcherConfig().MaxBatchSize)
	}
	for range 2 { // a pooled job keeps the file's shapes
		j := m.GetJob(1)
		in0 := []byte{5, 0, 0, 0, 6, 0, 0, 0, 7, 0, 0, 0, 8, 0, 0, 0}
		j.SetInput(0, in0)
		j.SetInput(1, []byte{0, 1, 0})
		if err := m.Submit(j, time.Now()); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(j.OutputShape(0), []int64{2, 2}) || !slices.Equal(j.OutputShape(1), []int64{3}) {
			t.Errorf("output shapes %v, %v; want [2 2], [3]", j.OutputShape(0), j.OutputShape(1))
		}
		if !bytes.Equal(j.Output(0), in0) || !bytes.Equal(j.Output(1), []byte{1, 0, 1}) {
			t.Errorf("outputs %v, %v; want %v, [1 0 1]", j.Output(0), j.Output(1), in0)
		}
		m.PutJob(j)
	}
}

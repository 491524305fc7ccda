package host

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"math"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/inferd/inferd/config"
	"github.com/inferd/inferd/gpu"
	"github.com/inferd/inferd/internal/testbed"
)

var (
	quiet    = slog.New(slog.NewTextHandler(io.Discard, nil))
	modelDir string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "inferd-host-test")
	if err != nil {
		panic(err)
	}
	modelDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// tiny is the tiny builtin model on cpu, named name.
func tiny(name string, maxBatch int) config.Model {
	return config.Model{Name: name, Options: gpu.Options{Device: "cpu", MaxBatch: maxBatch}, Path: "builtin:tiny", Softmax: "auto"}
}

func newSet(t *testing.T, models ...config.Model) *Set {
	t.Helper()
	testbed.NeedORT(t)
	s := NewSet(Env{Runtime: config.Runtime{Library: testbed.ORTLibrary(), ModelDir: modelDir}, Log: quiet})
	for _, c := range models {
		m, err := Open(c, s.env)
		if err != nil {
			t.Fatal(err)
		}
		s.Add(m)
	}
	t.Cleanup(func() { s.Close(context.Background(), func(string, error) {}) })
	return s
}

// A job runs through the batcher and the runner: its outputs have the
// request's rows, its timing is stamped, the statistics count it.
func TestSubmit(t *testing.T) {
	s := newSet(t, tiny("tiny", 4))
	m := s.Acquire("tiny")
	defer m.Release()
	j := m.GetJob(3)
	defer m.PutJob(j)
	in := j.OwnInput(0)
	if want := 3 * m.Inputs()[0].RowBytes(); len(in) != want {
		t.Fatalf("input buffer %d bytes, want %d", len(in), want)
	}
	for i := 0; i < len(in); i += 4 {
		binary.LittleEndian.PutUint32(in[i:], math.Float32bits(0.5))
	}
	if err := m.Submit(j, time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := j.OutputShape(0)[0]; got != 3 {
		t.Errorf("output batch %d, want 3", got)
	}
	if got, want := len(j.Output(0)), 3*m.Outputs()[0].RowBytes(); got != want {
		t.Errorf("output %d bytes, want %d", got, want)
	}
	if queue, compute := j.Timing(); queue < 0 || compute <= 0 {
		t.Errorf("timing queue %v compute %v", queue, compute)
	}
	st := m.Statistics()
	if st.InferenceCount != 3 || st.ExecutionCount != 1 || st.InferenceStats.Success.Count != 1 {
		t.Errorf("statistics %+v", st)
	}
	// Identical rows classify identically.
	row := m.Outputs()[0].RowBytes()
	a, b := m.Classes(j.Output(0)[:row], 3), m.Classes(j.Output(0)[2*row:], 3)
	if !slices.Equal(a, b) || len(a) != 3 {
		t.Errorf("classes of equal rows differ: %v, %v", a, b)
	}
}

// Reload closes a replaced model only once its last user has released
// it, and a use acquired after the swap gets the new model.
func TestReloadWaitsForUsers(t *testing.T) {
	s := newSet(t, tiny("tiny", 4))
	old := s.Acquire("tiny")
	done := make(chan error, 1)
	go func() {
		_, err := s.Reload(context.Background(), []config.Model{tiny("tiny", 2)})
		done <- err
	}()
	// The swap happens once the new model is open; then Reload waits.
	deadline := time.Now().Add(30 * time.Second)
	for s.Get("tiny") == old && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	nm := s.Acquire("tiny")
	if nm == old || nm.MaxBatch() != 2 {
		t.Fatalf("after the swap Acquire gave the old model (max_batch %d)", nm.MaxBatch())
	}
	nm.Release()
	select {
	case err := <-done:
		t.Fatalf("reload returned (%v) while the old model was in use", err)
	case <-time.After(100 * time.Millisecond):
	}
	if !old.Ready() {
		t.Fatal("the old model was closed under its user")
	}
	old.Release()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("reload did not finish after the last release")
	}
	if old.Ready() {
		t.Error("the replaced model is still open")
	}
}

// A reload whose context ends stops waiting for users.
func TestReloadContextEnds(t *testing.T) {
	s := newSet(t, tiny("tiny", 4))
	old := s.Acquire("tiny")
	defer old.Release()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := s.Reload(ctx, []config.Model{tiny("other", 2)}); err != nil && ctx.Err() == nil {
		t.Fatal(err)
	}
	// Opening the tiny model takes well under a second; a reload still
	// waiting for the user it holds would not return.
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("reload took %v with its context ended at 200ms and the old model still in use", took)
	}
	if s.Get("tiny") != nil || s.Get("other") == nil {
		t.Errorf("served %v after the reload", s.Models())
	}
}

func TestTopK(t *testing.T) {
	got := topK([]float32{0.1, 0.4, 0.4, 0.05, 0.05}, 3)
	want := []Class{{1, 0.4}, {2, 0.4}, {0, 0.1}}
	if !slices.Equal(got, want) {
		t.Errorf("topK = %v, want %v (ties by lower index)", got, want)
	}
	if got := topK([]float32{1, 2}, 5); len(got) != 2 || got[0].Index != 1 {
		t.Errorf("topK of 2 scores, k 5 = %v", got)
	}
}

// TopK ranks the raw FP32 bytes and reports them unchanged: logits stay
// logits (Triton's classification extension), no softmax.
func TestTopKRaw(t *testing.T) {
	var row []byte
	for _, v := range []float32{-3, 7.5, -0.25, 7.5} {
		row = binary.LittleEndian.AppendUint32(row, math.Float32bits(v))
	}
	want := []Class{{1, 7.5}, {3, 7.5}, {2, -0.25}}
	if got := TopK(row, 3); !slices.Equal(got, want) {
		t.Errorf("TopK = %v, want %v", got, want)
	}
	if got := TopK(row, 10); len(got) != 4 || got[3] != (Class{0, -3}) {
		t.Errorf("TopK with k beyond the row = %v, want all 4", got)
	}
}

func TestSoftmax(t *testing.T) {
	x := []float32{1000, 1000, 999} // large logits must not overflow
	softmax(x)
	if !isDistribution(x) || x[0] != x[1] || x[2] >= x[0] {
		t.Errorf("softmax = %v", x)
	}
}

// The preprocess settings and server.max_pixels reach the preprocessor.
func TestPreprocessSettings(t *testing.T) {
	testbed.NeedORT(t)
	c := tiny("tiny", 2)
	c.Preprocess.JPEGDCTScaling = true
	m, err := Open(c, Env{Runtime: config.Runtime{Library: testbed.ORTLibrary(), ModelDir: modelDir}, MaxPixels: 12345, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	pc := m.Images().Config()
	if !pc.JPEGDCTScaling || pc.MaxPixels != 12345 {
		t.Errorf("preprocessor config %+v: want jpeg_dct_scaling on and max_pixels 12345", pc)
	}
}

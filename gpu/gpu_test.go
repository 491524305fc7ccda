package gpu

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/inferd/inferd/internal/testbed"
	"github.com/inferd/inferd/model"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// modelDir holds the models the tests generate, once per run.
var modelDir string

func TestMain(m *testing.M) {
	if testbed.ORTLibrary() == "" {
		// Without the library the tests that load it skip (fail under make
		// test): run make setup.
		println("gpu: no ONNX Runtime ($" + LibraryEnv + ", .deps/ort): run make setup")
	}
	dir, err := os.MkdirTemp("", "inferd-gpu-test")
	if err != nil {
		panic(err)
	}
	modelDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func needLibrary(t testing.TB) {
	t.Helper()
	testbed.NeedORT(t)
}

func modelPath(t testing.TB, s model.Spec) string {
	t.Helper()
	p, err := model.Ensure(modelDir, s)
	if err != nil {
		t.Fatalf("generating %s: %v", s.Name(), err)
	}
	return p
}

func open(t testing.TB, path string, opts Options) *Model {
	t.Helper()
	needLibrary(t)
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	m, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// randomRows returns n float32 rows of the model's first input.
func randomRows(seed uint64, n, elems int) [][]float32 {
	r := rand.New(rand.NewPCG(seed, 7))
	rows := make([][]float32, n)
	for i := range rows {
		rows[i] = make([]float32, elems)
		for j := range rows[i] {
			rows[i][j] = float32(r.NormFloat64())
		}
	}
	return rows
}

func putRow(dst []byte, row []float32) {
	for i, v := range row {
		binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
	}
}

func getRow(src []byte, n int) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
	}
	return out
}

// run runs rows as one batch and returns the output rows.
func run(t testing.TB, m *Model, rows [][]float32) [][]float32 {
	t.Helper()
	l, err := m.Acquire(len(rows))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	in, rb := l.Input(0), m.Inputs()[0].RowBytes()
	for i, r := range rows {
		putRow(in[i*rb:], r)
	}
	if err := l.Run(); err != nil {
		t.Fatal(err)
	}
	out, ob := l.Output(0), m.Outputs()[0].RowBytes()
	res := make([][]float32, len(rows))
	for i := range rows {
		res[i] = getRow(out[i*ob:], m.Outputs()[0].RowElems())
	}
	return res
}

func TestOpenReadsTensorsFromFile(t *testing.T) {
	m := open(t, modelPath(t, model.Spec{Arch: "tiny"}), Options{MaxBatch: 8})
	in, out := m.Inputs(), m.Outputs()
	if len(in) != 1 || in[0].Name != "input" || in[0].Datatype != "FP32" || !equal(in[0].Shape, []int64{-1, 3, 224, 224}) {
		t.Errorf("inputs = %+v, want input FP32 [-1 3 224 224]", in)
	}
	if len(out) != 1 || out[0].Name != "output" || out[0].Datatype != "FP32" || !equal(out[0].Shape, []int64{-1, 1000}) {
		t.Errorf("outputs = %+v, want output FP32 [-1 1000]", out)
	}
	if got := m.Buckets(); !equal(got, []int{1, 2, 4, 8}) {
		t.Errorf("buckets = %v, want [1 2 4 8]", got)
	}
	if m.Device().String() != "cpu" || m.RuntimeVersion() == "" {
		t.Errorf("device %v, runtime %q", m.Device(), m.RuntimeVersion())
	}
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A batch must give each row what that row gives alone, whatever bucket it
// is padded to and whatever stale rows the padding holds.
func TestBatchEqualsRowsRunAlone(t *testing.T) {
	m := open(t, modelPath(t, model.Spec{Arch: "tiny"}), Options{MaxBatch: 8, Buckets: []int{1, 8}})
	rows := randomRows(1, 8, m.Inputs()[0].RowElems())
	batch := run(t, m, rows)
	// Five rows run in the 8-bucket, three stale rows behind them.
	part := run(t, m, rows[:5])
	for i, r := range rows {
		alone := run(t, m, [][]float32{r})[0]
		sum := 0.0
		for j := range alone {
			sum += float64(batch[i][j])
			if d := math.Abs(float64(batch[i][j] - alone[j])); d > 1e-5 {
				t.Fatalf("row %d class %d: batch %g, alone %g", i, j, batch[i][j], alone[j])
			}
			if i < 5 && math.Abs(float64(part[i][j]-alone[j])) > 1e-5 {
				t.Fatalf("row %d class %d: padded batch %g, alone %g", i, j, part[i][j], alone[j])
			}
		}
		if math.Abs(sum-1) > 1e-4 {
			t.Errorf("row %d sums to %g, want 1", i, sum)
		}
	}
}

func TestRealModelMetadata(t *testing.T) {
	dir := os.Getenv("INFERD_REALMODEL_DIR")
	if dir == "" {
		t.Skip("INFERD_REALMODEL_DIR is not set: the real pretrained model lives in ../shared/realmodel (.ci/run sets it)")
	}
	m := open(t, filepath.Join(dir, "mobilenetv2-12-int8.onnx"), Options{})
	in, out := m.Inputs(), m.Outputs()
	if len(in) != 1 || in[0].Name != "input" || in[0].Datatype != "FP32" || !equal(in[0].Shape, []int64{-1, 3, 224, 224}) {
		t.Errorf("inputs = %+v, want input float32 [-1,3,224,224]", in)
	}
	if len(out) != 1 || out[0].Name != "output" || out[0].Datatype != "FP32" || !equal(out[0].Shape, []int64{-1, 1000}) {
		t.Errorf("outputs = %+v, want output float32 [-1,1000]", out)
	}
}

func TestBadModels(t *testing.T) {
	needLibrary(t)
	good, err := os.ReadFile(modelPath(t, model.Spec{Arch: "tiny"}))
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
	goodPath := write("good.onnx", good)
	cases := []struct {
		name string
		path string
		opts Options
		want string // in the error text
	}{
		{"empty file", write("empty.onnx", nil), Options{}, "is empty"},
		{"truncated in the weights", write("trunc.onnx", good[:len(good)/2]), Options{}, "bad model"},
		{"not onnx at all", write("text.onnx", []byte("this is not a protobuf, just text\n")), Options{}, "bad model"},
		{"missing file", filepath.Join(dir, "nope.onnx"), Options{}, "no such file"},
		{"named input the model lacks", goodPath, Options{Inputs: []string{"images"}}, `has no input "images" (it has input)`},
		{"named output the model lacks", goodPath, Options{Outputs: []string{"probs"}}, `has no output "probs" (it has output)`},
		{"buckets not ending at max", goodPath, Options{MaxBatch: 8, Buckets: []int{1, 4}}, "the last must equal max_batch 8"},
		{"bad device", goodPath, Options{Device: "tpu:0"}, `device "tpu:0"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.opts.Logger = quiet
			m, err := Open(c.path, c.opts)
			if err == nil {
				m.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not say %q", err, c.want)
			}
		})
	}
}

// This machine has no GPU: asking for one must say what is missing, and
// fall back to cpu only where allowed.
func TestCUDAUnavailable(t *testing.T) {
	needLibrary(t)
	path := modelPath(t, model.Spec{Arch: "tiny"})
	m, err := Open(path, Options{Device: "cuda:0", Logger: quiet})
	if err == nil {
		dev := m.Device()
		m.Close()
		t.Skipf("CUDA works here (%v): nothing to test", dev)
	}
	if !errors.Is(err, ErrCUDAUnavailable) {
		t.Fatalf("error %v is not ErrCUDAUnavailable", err)
	}
	// With `make setup GPU=1` the provider loads and names the CUDA library
	// it lacks; without it the provider library itself is missing.
	if !strings.Contains(err.Error(), "libcublasLt.so.13") && !strings.Contains(err.Error(), "libonnxruntime_providers_cuda.so") {
		t.Errorf("error %q names neither the CUDA library nor the provider", err)
	}

	var logged strings.Builder
	m = open(t, path, Options{Device: "cuda:0", AllowCPUFallback: true, Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	if m.Device().Kind != "cpu" || m.FallbackReason() == "" {
		t.Errorf("device %v, reason %q: want cpu with a reason", m.Device(), m.FallbackReason())
	}
	// What was left to the cuda defaults (64 rows, 2 instances) falls back
	// to the cpu ones.
	if m.MaxBatch() != 8 || m.Instances() != 1 {
		t.Errorf("after fallback: max batch %d, %d instances; want the cpu defaults 8 and 1", m.MaxBatch(), m.Instances())
	}
	if n := strings.Count(logged.String(), "level=WARN"); n != 1 {
		t.Errorf("%d warnings logged, want 1:\n%s", n, logged.String())
	}
	run(t, m, randomRows(2, 3, m.Inputs()[0].RowElems()))
}

func TestUint8Input(t *testing.T) {
	m := open(t, modelPath(t, model.Spec{Arch: "tiny", Input: "uint8"}), Options{MaxBatch: 2})
	in := m.Inputs()[0]
	if in.Datatype != "UINT8" || in.RowBytes() != 224*224*3 {
		t.Fatalf("input %+v: want UINT8 rows of %d bytes", in, 224*224*3)
	}
	l, err := m.Acquire(2)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	for i := range l.Input(0) {
		l.Input(0)[i] = byte(i)
	}
	if err := l.Run(); err != nil {
		t.Fatal(err)
	}
}

func TestInstancesRunConcurrently(t *testing.T) {
	m := open(t, modelPath(t, model.Spec{Arch: "tiny"}), Options{MaxBatch: 4, Instances: 3, IntraOpThreads: 1})
	elems := m.Inputs()[0].RowElems()
	rows := randomRows(3, 4, elems)
	want := run(t, m, rows)
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() {
			for range 5 {
				got := run(t, m, rows[:1+g%4])
				for i := range got {
					for j := range got[i] {
						if math.Abs(float64(got[i][j]-want[i][j])) > 1e-5 {
							t.Errorf("goroutine %d row %d differs", g, i)
							return
						}
					}
				}
			}
		})
	}
	wg.Wait()
}

func TestAcquireAfterCloseAndOutOfRange(t *testing.T) {
	m := open(t, modelPath(t, model.Spec{Arch: "tiny"}), Options{MaxBatch: 4})
	for _, n := range []int{0, 5} {
		if _, err := m.Acquire(n); !errors.Is(err, ErrBatchSize) {
			t.Errorf("Acquire(%d) = %v, want ErrBatchSize", n, err)
		}
	}
	m.Close()
	if _, err := m.Acquire(1); !errors.Is(err, ErrClosed) {
		t.Errorf("Acquire after Close = %v, want ErrClosed", err)
	}
}

// rss reads the resident set size of this process in bytes.
func rss(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Skip("no /proc/self/statm")
	}
	var size, res int64
	if _, err := fmt.Sscan(string(b), &size, &res); err != nil {
		t.Fatal(err)
	}
	return res * int64(os.Getpagesize())
}

// Opening and closing must give native memory back: 50 sessions opened and
// closed in a loop may grow the resident set by at most 64 MiB (one tiny
// session with its buffers is about 3 MiB, so a leak of each would show as
// 150 MiB and more).
func TestCloseFreesNativeMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 60 sessions; skipped under -short")
	}
	path := modelPath(t, model.Spec{Arch: "tiny"})
	needLibrary(t)
	cycle := func() {
		m, err := Open(path, Options{MaxBatch: 8, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		run(t, m, randomRows(4, 8, m.Inputs()[0].RowElems()))
		m.Close()
	}
	for range 10 { // let allocators and arenas reach their steady size
		cycle()
	}
	before := rss(t)
	for range 50 {
		cycle()
	}
	after := rss(t)
	growth := after - before
	t.Logf("resident memory: %d MiB before, %d MiB after 50 open/close cycles (growth %d KiB)", before>>20, after>>20, growth>>10)
	if growth > 64<<20 {
		t.Errorf("resident memory grew by %d MiB over 50 sessions; bound is 64 MiB", growth>>20)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

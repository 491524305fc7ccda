package gpu

import (
	"errors"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"github.com/inferd/inferd/internal/testbed"
	"github.com/inferd/inferd/model"
)

func TestPinnedMemoryValidate(t *testing.T) {
	cases := []struct {
		opts Options
		want string // in the error; "" for none
	}{
		{Options{}, ""}, // auto by default
		{Options{CUDA: CUDAOptions{PinnedMemory: "auto"}}, ""},
		{Options{Device: "cuda:1", CUDA: CUDAOptions{PinnedMemory: "on"}}, ""},
		{Options{Device: "cuda", CUDA: CUDAOptions{PinnedMemory: "off"}}, ""},
		// on is ignored on cpu, as every cuda setting is: a config written
		// for device auto must load on a host without a GPU.
		{Options{Device: "cpu", CUDA: CUDAOptions{PinnedMemory: "on"}}, ""},
		{Options{CUDA: CUDAOptions{PinnedMemory: "x"}}, `cuda.pinned_memory "x": want auto, on or off`},
		{Options{CUDA: CUDAOptions{PinnedMemory: "true"}}, `cuda.pinned_memory "true": want auto, on or off`},
		{Options{CUDA: CUDAOptions{PinnedMemory: "On"}}, `cuda.pinned_memory "On": want auto, on or off`},
	}
	for _, c := range cases {
		err := c.opts.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("pinned_memory %q on %q: %v", c.opts.CUDA.PinnedMemory, c.opts.Device, err)
		case c.want != "" && (err == nil || err.Error() != c.want):
			t.Errorf("pinned_memory %q: error %v, want %q", c.opts.CUDA.PinnedMemory, err, c.want)
		}
	}
	o, _, _ := Options{}.withDefaults()
	if o.CUDA.PinnedMemory != "auto" {
		t.Errorf("default pinned_memory %q, want auto", o.CUDA.PinnedMemory)
	}
}

// needNoCUDARuntime skips where the real CUDA runtime loads: the tests
// that use it play a host without one.
func needNoCUDARuntime(t *testing.T) {
	t.Helper()
	if p, err := openPinned(cudaRuntime, 0); err == nil {
		p.close()
		t.Skipf("%s loads here: these tests play a host without it", cudaRuntime)
	}
}

// Without the CUDA runtime: off asks for nothing, auto falls back with a
// reason naming the library, on is an error naming it and the knob.
func TestPinnedAllocatorWithoutRuntime(t *testing.T) {
	needNoCUDARuntime(t)
	p, reason, err := newPinnedAllocator("off", cudaRuntime, 0)
	if p != nil || reason != "" || err != nil {
		t.Errorf("off: %v, %q, %v; want nothing", p, reason, err)
	}
	p, reason, err = newPinnedAllocator("auto", cudaRuntime, 0)
	if p != nil || err != nil || !strings.Contains(reason, "cannot load libcudart.so.13") {
		t.Errorf("auto: %v, %q, %v; want no allocator and a reason naming libcudart.so.13", p, reason, err)
	}
	p, _, err = newPinnedAllocator("on", cudaRuntime, 0)
	if p != nil || !errors.Is(err, ErrPinnedMemory) {
		t.Fatalf("on: %v, %v; want ErrPinnedMemory", p, err)
	}
	t.Logf("on: %v", err)
	for _, want := range []string{"pinned host memory unavailable", "cannot load libcudart.so.13", "cannot open shared object file", "cuda.pinned_memory"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("on: error %q does not say %q", err, want)
		}
	}
}

// A library that is not there, and one that is there but is not a CUDA
// runtime, are told apart.
func TestPinnedAllocatorBadLibrary(t *testing.T) {
	cases := []struct {
		lib  string
		want []string
	}{
		{"libinferd-no-such-cudart.so.1", []string{"cannot load libinferd-no-such-cudart.so.1: libinferd-no-such-cudart.so.1: cannot open shared object file"}},
		{filepath.Join(t.TempDir(), "libcudart.so.13"), []string{"cannot load /", "libcudart.so.13: cannot open shared object file"}},
		// libc is loaded in every cgo process: found, but no cudaSetDevice.
		{"libc.so.6", []string{"libc.so.6 has no cudaSetDevice: not a CUDA runtime"}},
	}
	for _, c := range cases {
		_, _, err := newPinnedAllocator("on", c.lib, 0)
		if !errors.Is(err, ErrPinnedMemory) {
			t.Errorf("%s: %v, want ErrPinnedMemory", c.lib, err)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", c.lib, err, w)
			}
		}
	}
}

// On a host without the CUDA runtime, auto logs exactly one line and the
// model runs on Go memory; on fails Open's step; off says nothing. The
// device here is cpu (there is no GPU), so the test calls the step a cuda
// Open takes after its first session, openPinned, itself.
func TestPinnedAutoFallsBackWithOneLogLine(t *testing.T) {
	needNoCUDARuntime(t)
	path := modelPath(t, model.Spec{Arch: "tiny"})
	for _, mode := range []string{"auto", "on", "off"} {
		t.Run(mode, func(t *testing.T) {
			var logged strings.Builder
			m := open(t, path, Options{MaxBatch: 2, CUDA: CUDAOptions{PinnedMemory: mode}, Logger: slog.New(slog.NewTextHandler(&logged, nil))})
			if !strings.Contains(logged.String(), "pinned_memory=false") {
				t.Errorf("the model opened line does not say pinned_memory=false:\n%s", logged.String())
			}
			logged.Reset()
			err := m.openPinned(cudaRuntime)
			lines := strings.Count(logged.String(), "\n")
			t.Logf("err %v, logged: %s", err, logged.String())
			switch mode {
			case "auto":
				if err != nil || lines != 1 || !strings.Contains(logged.String(), "libcudart.so.13") {
					t.Errorf("err %v, %d lines logged, want none and 1 naming libcudart.so.13:\n%s", err, lines, logged.String())
				}
			case "on":
				if !errors.Is(err, ErrPinnedMemory) || !strings.Contains(err.Error(), "libcudart.so.13") || lines != 0 {
					t.Errorf("err %v, %d lines logged; want ErrPinnedMemory naming libcudart.so.13, nothing logged", err, lines)
				}
			case "off":
				if err != nil || lines != 0 {
					t.Errorf("err %v, %d lines logged; want neither", err, lines)
				}
			}
			if m.PinnedMemory() {
				t.Error("PinnedMemory() is true")
			}
			run(t, m, randomRows(5, 2, m.Inputs()[0].RowElems()))
		})
	}
}

// fakeCUDARuntime builds testdata/fakecudart.c, a stand-in for the CUDA
// runtime's four functions, into a shared library.
func fakeCUDARuntime(t *testing.T) string {
	t.Helper()
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "cc"
	}
	if _, err := exec.LookPath(cc); err != nil {
		testbed.Missing(t, "no C compiler (%s): cgo needs one anyway", cc)
	}
	lib := filepath.Join(t.TempDir(), "libfakecudart.so")
	out, err := exec.Command(cc, "-shared", "-fPIC", "-O2", "-o", lib, filepath.Join("testdata", "fakecudart.c")).CombinedOutput()
	if err != nil {
		t.Fatalf("building the fake CUDA runtime: %v\n%s", err, out)
	}
	return lib
}

// The allocator's path through a runtime that is there: page-aligned,
// zeroed, writable buffers, counted until freed, and the runtime's own
// error text when it refuses.
func TestPinnedAllocatorFakeRuntime(t *testing.T) {
	lib := fakeCUDARuntime(t)
	p, reason, err := newPinnedAllocator("auto", lib, 1)
	if err != nil || p == nil || reason != "" {
		t.Fatalf("auto over the fake runtime: %v, %q, %v", p, reason, err)
	}
	defer p.close()
	if p.found {
		t.Error("found: the fake runtime was loaded by this call, not before")
	}
	b, err := p.alloc(10_000)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 10_000 || uintptr(unsafe.Pointer(unsafe.SliceData(b)))%4096 != 0 {
		t.Errorf("buffer of %d bytes at %p: want 10000 bytes, page-aligned", len(b), unsafe.SliceData(b))
	}
	for i := range b {
		if b[i] != 0 {
			t.Fatalf("byte %d is %d: want zeroed memory", i, b[i])
		}
		b[i] = byte(i)
	}
	if n := p.live.Load(); n != 10_000 {
		t.Errorf("%d bytes live, want 10000", n)
	}
	if err := p.free(b); err != nil {
		t.Fatal(err)
	}
	if n := p.live.Load(); n != 0 {
		t.Errorf("%d bytes live after free, want 0", n)
	}

	// 256 TiB is beyond any x86-64 address space: the runtime says so.
	if _, err := p.alloc(1 << 48); !errors.Is(err, ErrPinnedMemory) || !strings.Contains(err.Error(), "out of memory (cudaError 2)") ||
		!strings.Contains(err.Error(), "cuda.pinned_memory off") {
		t.Errorf("alloc of 256 TiB: %v; want ErrPinnedMemory with the runtime's text and the knob", err)
	}
	bad, _, err := newPinnedAllocator("on", lib, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.close()
	if _, err := bad.alloc(4096); err == nil || !strings.Contains(err.Error(), "invalid device ordinal (cudaError 101)") {
		t.Errorf("alloc on device -1: %v; want the runtime's invalid device ordinal", err)
	}
}

// pinInstances moves m's idle instances onto buffers from p, as Open does
// on a cuda device, so that ONNX Runtime runs over C memory here.
func pinInstances(t *testing.T, m *Model, p *pinnedAllocator) {
	t.Helper()
	for _, inst := range m.instances {
		if err := errors.Join(m.destroyTensors(inst)...); err != nil {
			t.Fatal(err)
		}
		m.freeBuffers(inst)
	}
	m.pinned = p
	for _, inst := range m.instances {
		if err := m.allocate(inst); err != nil {
			t.Fatal(err)
		}
	}
}

// ONNX Runtime tensors over pinned buffers give what they give over Go
// memory, under -race and cgo's pointer checks too, and Close frees every
// buffer.
func TestPinnedBuffersRunModel(t *testing.T) {
	lib := fakeCUDARuntime(t)
	path := modelPath(t, model.Spec{Arch: "tiny"})
	opts := Options{MaxBatch: 4, Buckets: []int{1, 4}, Instances: 2, IntraOpThreads: 1}
	ref := open(t, path, opts)
	rows := randomRows(6, 4, ref.Inputs()[0].RowElems())
	want := run(t, ref, rows)

	opts.SkipWarmup = true
	m := open(t, path, opts)
	p, _, err := newPinnedAllocator("on", lib, 0)
	if err != nil {
		t.Fatal(err)
	}
	pinInstances(t, m, p)
	if !m.PinnedMemory() {
		t.Fatal("PinnedMemory() is false")
	}
	perInstance := int64(4 * (m.Inputs()[0].RowBytes() + m.Outputs()[0].RowBytes()))
	if n := p.live.Load(); n != 2*perInstance {
		t.Errorf("%d bytes pinned, want %d (2 instances of 4 rows)", n, 2*perInstance)
	}
	for _, n := range []int{4, 3, 1} { // both buckets, one padded
		for range 2 { // both instances
			got := run(t, m, rows[:n])
			for i := range got {
				for j := range got[i] {
					if math.Abs(float64(got[i][j]-want[i][j])) > 1e-5 {
						t.Fatalf("%d rows: row %d class %d: %g over pinned memory, %g over Go memory", n, i, j, got[i][j], want[i][j])
					}
				}
			}
		}
	}
	m.Close()
	if n := p.live.Load(); n != 0 {
		t.Errorf("%d bytes still pinned after Close, want 0", n)
	}
}

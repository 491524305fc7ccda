// Package gpu runs ONNX models on a device through ONNX Runtime: it loads
// the runtime, opens sessions on the CPU or the CUDA execution provider,
// reads a model's inputs and outputs from its file, and runs batches through
// tensors allocated once per batch-size bucket.
//
// A Model holds Options.Instances sessions. A caller Acquires a Lease for a
// batch of n rows, writes the rows into the Lease's input buffers, Runs it,
// reads the output buffers and Releases it. The buffers of one instance are
// shared by all its buckets (a bucket's tensor is a prefix of the largest),
// so memory is MaxBatch rows per instance and no run allocates a tensor. On
// a cuda device they can be page-locked (cuda.pinned_memory, pinned.go).
package gpu

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/inferd/inferd/httperr"
)

// Model is an ONNX model opened on one device with one or more session
// instances. Its methods are safe for concurrent use.
type Model struct {
	path     string
	opts     Options // with defaults filled
	asked    Options // as given: which defaults to redo after a cpu fallback
	device   Device
	fallback string
	inputs   []TensorInfo
	outputs  []TensorInfo
	maxBatch int
	// batched is false for a model whose tensors share no batch
	// dimension (layout): it runs one request of the file's shapes at a
	// time, and unbatchedWhy says why.
	batched      bool
	unbatchedWhy string
	// bucketOf[n] is the index in buckets of the smallest bucket >= n rows,
	// for n in 1..maxBatch: Acquire looks a batch's bucket up, it does not
	// search for it.
	bucketOf []int
	buckets  []int
	version  string
	runTimes []time.Duration // per bucket, from warm-up's second pass

	// pinned allocates the instances' buffers on cuda; nil: Go memory.
	pinned    *pinnedAllocator
	free      chan *instance
	instances []*instance
	closeOnce sync.Once
	closed    chan struct{}
}

// instance is one session with its pre-allocated input and output buffers
// and, per bucket, the tensors over prefixes of them.
type instance struct {
	sess    *ort.DynamicAdvancedSession
	inBuf   [][]byte
	outBuf  [][]byte
	buckets []bucketIO
	lease   Lease
}

type bucketIO struct {
	size    int
	inputs  []ort.Value
	outputs []ort.Value
}

// Open loads the library if needed and opens the model at path with opts.
// Every bucket of every instance is run once (warm-up) before it returns,
// unless opts.SkipWarmup.
func Open(path string, opts Options) (*Model, error) {
	asked := opts
	opts, dev, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("gpu: %w", err)
	}
	version, err := Load(opts.Library)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadModel, err)
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: %s is empty; want an ONNX model file", ErrBadModel, path)
	}
	m := &Model{path: path, opts: opts, asked: asked, device: dev, version: version, closed: make(chan struct{})}
	if err := m.readInfo(data); err != nil {
		return nil, err
	}
	start := time.Now()
	if err := m.openInstances(data); err != nil {
		m.destroy()
		return nil, err
	}
	opened := time.Since(start)
	if !opts.SkipWarmup {
		start = time.Now()
		if err := m.warmup(); err != nil {
			m.destroy()
			return nil, err
		}
	}
	opts.Logger.Info("model opened", "path", path, "device", m.device.String(), "instances", opts.Instances,
		"buckets", m.buckets, "pinned_memory", m.PinnedMemory(), "open", opened.Round(time.Millisecond), "warmup", time.Since(start).Round(time.Millisecond))
	return m, nil
}

// readInfo reads inputs and outputs from the file and picks the buckets.
func (m *Model) readInfo(data []byte) error {
	ins, outs, err := ort.GetInputOutputInfoWithONNXData(data)
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), "Error creating temporary session: ")
		return fmt.Errorf("%w: %s is not a valid ONNX model (%d bytes; onnx runtime says: %s)", ErrBadModel, m.path, len(data), lowerFirst(msg))
	}
	for _, io := range ins {
		t, err := tensorInfo("input", io)
		if err != nil {
			return fmt.Errorf("%s: %w", m.path, err)
		}
		m.inputs = append(m.inputs, t)
	}
	for _, io := range outs {
		t, err := tensorInfo("output", io)
		if err != nil {
			return fmt.Errorf("%s: %w", m.path, err)
		}
		m.outputs = append(m.outputs, t)
	}
	if m.inputs, err = pick("input", m.path, m.inputs, m.opts.Inputs); err != nil {
		return err
	}
	if m.outputs, err = pick("output", m.path, m.outputs, m.opts.Outputs); err != nil {
		return err
	}
	if len(m.inputs) == 0 || len(m.outputs) == 0 {
		return fmt.Errorf("%w: %s has %d inputs and %d outputs; want at least one of each", ErrBadModel, m.path, len(m.inputs), len(m.outputs))
	}
	if m.batched, m.unbatchedWhy, err = layout(m.inputs, m.outputs); err != nil {
		return fmt.Errorf("%s: %w", m.path, err)
	}
	if !m.batched {
		// One request per run, the tensors as the file shapes them.
		m.setBuckets(1, []int{1})
		return nil
	}
	m.setBuckets(m.opts.MaxBatch, m.opts.Buckets)
	if m.fixedBatch() {
		// A model whose batch dimension is fixed runs at that size only.
		n := int(slices.Concat(m.inputs, m.outputs)[0].Shape[0])
		m.setBuckets(n, []int{n})
	}
	return nil
}

// fixedBatch reports whether the model's batch sizes are fixed: its batch
// dimension is a fixed size, or it has none.
func (m *Model) fixedBatch() bool {
	return !m.batched || slices.ContainsFunc(slices.Concat(m.inputs, m.outputs), func(t TensorInfo) bool { return t.Shape[0] > 0 })
}

// pick returns the tensors named in want, in that order; all when want is
// empty.
func pick(kind, path string, have []TensorInfo, want []string) ([]TensorInfo, error) {
	if len(want) == 0 {
		return have, nil
	}
	var got []TensorInfo
	for _, name := range want {
		i := slices.IndexFunc(have, func(t TensorInfo) bool { return t.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("%w: %s has no %s %q (it has %s)", ErrBadModel, path, kind, name, strings.Join(names(have), ", "))
		}
		got = append(got, have[i])
	}
	if kind == "input" && len(got) != len(have) {
		return nil, fmt.Errorf("%w: %s has inputs %s; every one must be fed, %d named", ErrBadModel, path, strings.Join(names(have), ", "), len(got))
	}
	return got, nil
}

func (m *Model) openInstances(data []byte) error {
	so, err := m.sessionOptions()
	if err != nil {
		if errors.Is(err, ErrCUDAUnavailable) {
			return m.cudaError(err, data)
		}
		return err
	}
	defer so.Destroy()
	inNames, outNames := names(m.inputs), names(m.outputs)
	m.free = make(chan *instance, m.opts.Instances)
	for range m.opts.Instances {
		sess, err := ort.NewDynamicAdvancedSessionWithONNXData(data, inNames, outNames, so)
		if err != nil {
			if m.device.Kind == "cuda" && len(m.instances) == 0 {
				return m.cudaError(err, data)
			}
			return fmt.Errorf("%w: %s: %s", ErrBadModel, m.path, lowerFirst(err.Error()))
		}
		inst := &instance{sess: sess}
		m.instances = append(m.instances, inst)
		if m.device.Kind == "cuda" && len(m.instances) == 1 {
			// The first session has loaded the provider, and with it the
			// CUDA runtime the pinned buffers come from.
			if err := m.openPinned(cudaRuntime); err != nil {
				return err
			}
		}
		if err := m.allocate(inst); err != nil {
			return err
		}
		inst.lease.m, inst.lease.inst = m, inst
		m.free <- inst
	}
	return nil
}

// cudaError turns a failure to create a CUDA session into the error the
// operator needs, or falls back to CPU where allowed.
func (m *Model) cudaError(err error, data []byte) error {
	reason := cudaReason(err)
	if errors.Is(err, ErrCUDAUnavailable) { // from sessionOptions: already reduced
		reason = strings.TrimPrefix(err.Error(), ErrCUDAUnavailable.Error()+": ")
	}
	if !m.opts.AllowCPUFallback {
		return fmt.Errorf("%w on %s: %s (install CUDA 13 and cuDNN 9 and put them on LD_LIBRARY_PATH, run `make setup GPU=1`, or allow cpu fallback)", ErrCUDAUnavailable, m.device, reason)
	}
	m.opts.Logger.Warn("cuda unavailable, running on cpu", "model", m.path, "device", m.device.String(), "reason", reason)
	m.fallback = reason
	m.device = Device{Kind: "cpu"}
	// What was left to the cuda defaults gets the cpu ones.
	cpu, _, err := Options{Device: "cpu", MaxBatch: m.asked.MaxBatch, Buckets: m.asked.Buckets, Instances: m.asked.Instances}.withDefaults()
	if err != nil {
		return err
	}
	m.opts.Instances = cpu.Instances
	if !m.fixedBatch() {
		m.setBuckets(cpu.MaxBatch, cpu.Buckets)
	}
	return m.openInstances(data)
}

// cudaReason extracts the useful part of ONNX Runtime's message, which names
// the library the dynamic loader could not find.
func cudaReason(err error) string {
	msg := err.Error()
	for _, line := range strings.Split(msg, "\n") {
		if i := strings.Index(line, "lib"); i >= 0 && strings.Contains(line, "cannot open shared object file") {
			return strings.TrimSpace(line[i:])
		}
	}
	return lowerFirst(strings.TrimSpace(msg))
}

func (m *Model) sessionOptions() (*ort.SessionOptions, error) {
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, internal(fmt.Errorf("gpu: session options: %w", err))
	}
	fail := func(what string, err error) (*ort.SessionOptions, error) {
		so.Destroy()
		return nil, internal(fmt.Errorf("gpu: %s: %w", what, err))
	}
	if m.opts.IntraOpThreads > 0 {
		if err := so.SetIntraOpNumThreads(m.opts.IntraOpThreads); err != nil {
			return fail("intra_op_threads", err)
		}
	}
	if err := so.SetInterOpNumThreads(1); err != nil {
		return fail("inter_op_threads", err)
	}
	spin := boolOpt(m.opts.Spinning)
	for _, k := range []string{"session.intra_op.allow_spinning", "session.inter_op.allow_spinning"} {
		if err := so.AddSessionConfigEntry(k, spin); err != nil {
			return fail(k, err)
		}
	}
	if m.opts.ProfilePrefix != "" {
		if err := so.EnableProfiling(m.opts.ProfilePrefix); err != nil {
			return fail("profiling", err)
		}
	}
	if m.device.Kind == "cuda" {
		co, err := ort.NewCUDAProviderOptions()
		if err != nil {
			so.Destroy()
			return nil, m.cudaOptionsError(err)
		}
		defer co.Destroy()
		if err := co.Update(m.opts.providerOptions(m.device)); err != nil {
			so.Destroy()
			return nil, m.cudaOptionsError(err)
		}
		if err := so.AppendExecutionProviderCUDA(co); err != nil {
			so.Destroy()
			return nil, m.cudaOptionsError(err)
		}
	}
	return so, nil
}

// cudaOptionsError reports a provider that failed before any session was
// made; the fallback, if allowed, happens when openInstances sees it.
func (m *Model) cudaOptionsError(err error) error {
	return fmt.Errorf("%w: %s", ErrCUDAUnavailable, cudaReason(err))
}

func names(ts []TensorInfo) []string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = t.Name
	}
	return s
}

// openPinned sets m.pinned as cuda.pinned_memory asks, from the CUDA
// runtime lib: auto logs one line when it falls back to Go memory, on
// fails.
func (m *Model) openPinned(lib string) error {
	p, reason, err := newPinnedAllocator(m.opts.CUDA.PinnedMemory, lib, m.device.ID)
	if err != nil {
		return fmt.Errorf("gpu: %s on %s: %w", m.path, m.device, err)
	}
	if p == nil && reason != "" {
		m.opts.Logger.Info("pinned memory unavailable, host buffers are Go memory", "model", m.path, "device", m.device.String(), "reason", reason)
	}
	m.pinned = p
	return nil
}

// PinnedMemory reports whether the instances' input and output buffers are
// page-locked host memory from the CUDA runtime (cuda.pinned_memory).
func (m *Model) PinnedMemory() bool { return m.pinned != nil }

// allocate gives inst one buffer per input and output, sized for maxBatch
// rows (pinned memory when m.pinned is set), and per bucket tensors over
// their prefixes.
func (m *Model) allocate(inst *instance) error {
	buffer := func(t TensorInfo) ([]byte, error) {
		n := m.maxBatch * t.RowBytes()
		if m.pinned == nil {
			return make([]byte, n), nil
		}
		b, err := m.pinned.alloc(n)
		if err != nil {
			return nil, fmt.Errorf("gpu: %s: buffer of %q (%d rows): %w", m.path, t.Name, m.maxBatch, err)
		}
		return b, nil
	}
	var err error
	inst.inBuf = make([][]byte, len(m.inputs))
	for i, t := range m.inputs {
		if inst.inBuf[i], err = buffer(t); err != nil {
			return err
		}
	}
	inst.outBuf = make([][]byte, len(m.outputs))
	for i, t := range m.outputs {
		if inst.outBuf[i], err = buffer(t); err != nil {
			return err
		}
	}
	for _, size := range m.buckets {
		b := bucketIO{size: size}
		for i, t := range m.inputs {
			v, err := newTensor(t, size, inst.inBuf[i])
			if err != nil {
				return err
			}
			b.inputs = append(b.inputs, v)
		}
		for i, t := range m.outputs {
			v, err := newTensor(t, size, inst.outBuf[i])
			if err != nil {
				return err
			}
			b.outputs = append(b.outputs, v)
		}
		inst.buckets = append(inst.buckets, b)
	}
	return nil
}

func newTensor(t TensorInfo, rows int, buf []byte) (ort.Value, error) {
	shape := slices.Clone(t.Shape)
	if t.Batched() {
		shape[0] = int64(rows)
	}
	n := rows * t.RowBytes()
	if n == 0 {
		return nil, fmt.Errorf("%w: tensor %q has zero-sized rows", ErrBadModel, t.Name)
	}
	v, err := ort.NewCustomDataTensor(ort.NewShape(shape...), buf[:n:n], t.elemType)
	if err != nil {
		return nil, internal(fmt.Errorf("gpu: tensor %q for %d rows: %w", t.Name, rows, err))
	}
	return v, nil
}

// warmup runs every bucket of every instance once on zero rows, then
// each bucket once more on all instances at once, timed: the first run pays
// for memory arenas and cuDNN's algorithm search, the second is what a
// batch costs when every instance is busy (BucketRunTimes).
func (m *Model) warmup() error {
	for _, inst := range m.instances {
		for i := range inst.buckets {
			b := &inst.buckets[i]
			start := time.Now()
			if err := inst.sess.Run(b.inputs, b.outputs); err != nil {
				return internal(fmt.Errorf("gpu: warm-up of bucket %d on %s: %w", b.size, m.device, err))
			}
			m.opts.Logger.Debug("bucket warmed", "model", m.path, "bucket", b.size, "took", time.Since(start))
		}
	}
	m.runTimes = make([]time.Duration, len(m.buckets))
	for i := range m.buckets {
		start := time.Now()
		errs := make([]error, len(m.instances))
		var wg sync.WaitGroup
		for k, inst := range m.instances {
			wg.Go(func() {
				b := &inst.buckets[i]
				errs[k] = inst.sess.Run(b.inputs, b.outputs)
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return internal(fmt.Errorf("gpu: timed warm-up of bucket %d on %s: %w", m.buckets[i], m.device, err))
		}
		m.runTimes[i] = time.Since(start)
	}
	return nil
}

// BucketRunTimes is what one batch of each bucket (in Buckets order) took
// at warm-up with every instance running one: a seed for the batcher's
// admission before real batches are measured. Nil with SkipWarmup.
func (m *Model) BucketRunTimes() []time.Duration { return slices.Clone(m.runTimes) }

// Inputs describes the model's inputs, in the order Lease.Input takes them.
func (m *Model) Inputs() []TensorInfo { return m.inputs }

// Outputs describes the model's outputs, in the order Lease.Output gives them.
func (m *Model) Outputs() []TensorInfo { return m.outputs }

// Device is the device the sessions run on (cpu after a fallback).
func (m *Model) Device() Device { return m.device }

// FallbackReason says why a cuda model runs on cpu; empty when it does not.
func (m *Model) FallbackReason() string { return m.fallback }

// MaxBatch is the largest batch one run takes: 1 for an unbatched model.
func (m *Model) MaxBatch() int { return m.maxBatch }

// Batched reports whether the model's tensors share a batch dimension
// (Shape[0]). An unbatched model runs one request at a time, its tensors
// exactly as the file shapes them; one "row" is the whole tensor.
func (m *Model) Batched() bool { return m.batched }

// UnbatchedReason says why the model is served unbatched; empty when it is
// batched.
func (m *Model) UnbatchedReason() string { return m.unbatchedWhy }

// setBuckets sets the largest batch and the buckets, and indexes them.
func (m *Model) setBuckets(maxBatch int, buckets []int) {
	m.maxBatch, m.buckets = maxBatch, buckets
	m.bucketOf = make([]int, maxBatch+1)
	bi := 0
	for n := 1; n <= maxBatch; n++ {
		for buckets[bi] < n {
			bi++
		}
		m.bucketOf[n] = bi
	}
}

// Buckets are the batch sizes runs are padded to.
func (m *Model) Buckets() []int { return slices.Clone(m.buckets) }

// Instances is the number of sessions, i.e. of batches that can run at once.
func (m *Model) Instances() int { return len(m.instances) }

// RuntimeVersion is the version of the ONNX Runtime library in use.
func (m *Model) RuntimeVersion() string { return m.version }

// Acquire waits for a free instance and returns a Lease on it for a batch of
// n rows (1 <= n <= MaxBatch), run at the smallest bucket >= n: a batcher
// given Buckets passes the bucket it chose, which is that bucket itself. The
// caller must Release it.
func (m *Model) Acquire(n int) (*Lease, error) {
	if n < 1 || n > m.maxBatch {
		return nil, httperr.Errorf(http.StatusBadRequest, "gpu: %w: %d rows, want 1 to %d", ErrBatchSize, n, m.maxBatch)
	}
	bi := m.bucketOf[n]
	select {
	case <-m.closed:
		return nil, ErrClosed
	default:
	}
	select {
	case inst := <-m.free:
		l := &inst.lease
		l.rows, l.b = n, &inst.buckets[bi]
		return l, nil
	case <-m.closed:
		return nil, ErrClosed
	}
}

// Close waits for leased instances to be released and frees every session
// and buffer. It is safe to call more than once.
func (m *Model) Close() error {
	m.closeOnce.Do(func() {
		close(m.closed)
		for range m.instances {
			<-m.free
		}
		m.destroy()
		m.opts.Logger.Info("model closed", "path", m.path)
	})
	return nil
}

// destroy frees native memory; all instances must be idle. Pinned buffers
// go last: the tensors over them and the sessions that copy from them go
// first.
func (m *Model) destroy() {
	var errs []error
	for _, inst := range m.instances {
		errs = append(errs, m.destroyTensors(inst)...)
		if inst.sess != nil {
			errs = append(errs, inst.sess.Destroy())
		}
		errs = append(errs, m.freeBuffers(inst)...)
	}
	m.instances = nil
	if m.pinned != nil {
		m.pinned.close()
	}
	if err := errors.Join(errs...); err != nil {
		m.opts.Logger.Warn("freeing model", "path", m.path, "err", err)
	}
}

// destroyTensors frees inst's tensors, not the buffers under them.
func (m *Model) destroyTensors(inst *instance) []error {
	var errs []error
	for _, b := range inst.buckets {
		for _, v := range slices.Concat(b.inputs, b.outputs) {
			errs = append(errs, v.Destroy())
		}
	}
	inst.buckets = nil
	return errs
}

// freeBuffers frees inst's buffers (pinned ones through the runtime; Go
// ones are left to the collector). No tensor may be over them any more.
func (m *Model) freeBuffers(inst *instance) []error {
	var errs []error
	if m.pinned != nil {
		for _, b := range slices.Concat(inst.inBuf, inst.outBuf) {
			errs = append(errs, m.pinned.free(b))
		}
	}
	inst.inBuf, inst.outBuf = nil, nil
	return errs
}

// Lease is one instance held for one batch. Its buffers are valid until
// Release.
type Lease struct {
	m    *Model
	inst *instance
	b    *bucketIO
	rows int
}

// Rows is the number of rows the batch carries.
func (l *Lease) Rows() int { return l.rows }

// Bucket is the padded batch size the device runs. Rows past Rows() are
// left as they were (runs are row-independent); their outputs are ignored.
func (l *Lease) Bucket() int { return l.b.size }

// Input returns the buffer of input i, Bucket() rows long; row r starts at
// r*Inputs()[i].RowBytes().
func (l *Lease) Input(i int) []byte {
	return l.inst.inBuf[i][:l.b.size*l.m.inputs[i].RowBytes()]
}

// Output returns the buffer of output i after Run, Bucket() rows long.
func (l *Lease) Output(i int) []byte {
	return l.inst.outBuf[i][:l.b.size*l.m.outputs[i].RowBytes()]
}

// Run runs the batch on the device.
func (l *Lease) Run() error {
	if err := l.inst.sess.Run(l.b.inputs, l.b.outputs); err != nil {
		return internal(fmt.Errorf("gpu: run of %d rows (bucket %d) on %s: %s", l.rows, l.b.size, l.m.device, lowerFirst(err.Error())))
	}
	return nil
}

// Release returns the instance for the next batch.
func (l *Lease) Release() {
	l.b = nil
	l.m.free <- l.inst
}

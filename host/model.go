// Package host hosts models between the HTTP front end and the devices:
// Open opens a model's sessions (package gpu) and its dynamic batcher
// (package batcher), a Model's runner copies the rows of each batch into a
// session lease and back, its Jobs carry one request's rows through the
// batcher, and its statistics are Triton's. A Set is the served models,
// looked up by name without a lock and reloaded without dropping a request.
//
// The front end (package server) acquires a model from the Set, fills a
// Job (parsed tensors or a decoded image), submits it, and answers from
// the Job's outputs:
//
//	server → host → batcher → host's runner → gpu
package host

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/inferd/inferd/batcher"
	"github.com/inferd/inferd/config"
	"github.com/inferd/inferd/gpu"
	"github.com/inferd/inferd/model"
	"github.com/inferd/inferd/preprocess"
	"github.com/inferd/inferd/respcache"
)

// Model is a served model: its sessions, its batcher, how images become
// its rows, and its labels.
type Model struct {
	Name    string
	Path    string
	session *gpu.Model
	batcher *batcher.Batcher
	pre     *preprocess.Preprocessor // nil when the model does not take images
	labels  []string
	softmax string // auto, true, false
	ready   atomic.Bool
	jobs    sync.Pool
	stats   *modelStats
	cache   *respcache.Cache // nil when cache.max_bytes is 0
	cfg     config.Model     // what it was opened from: Reload keeps it when unchanged
	info    string           // its inferd_model_info series
	// users counts the handlers holding the model (Set.Acquire), so a
	// reload closes it only once they are done: the last Release of a
	// retired model closes idle.
	users    atomic.Int64
	retired  atomic.Bool
	idle     chan struct{}
	idleOnce sync.Once

	inBytes  []int // row bytes per input
	outBytes []int // row bytes per output
}

// Env is what the models of a server are opened with.
type Env struct {
	// Runtime says which ONNX Runtime to load and where generated models
	// are cached.
	Runtime config.Runtime
	// MaxPixels bounds a decoded image (server.max_pixels); 0 means the
	// preprocessor's default.
	MaxPixels int
	// Metrics receives each model's batcher and info series; nil means a
	// new set.
	Metrics *metrics.Set
	// Log receives lifecycle lines; nil means slog.Default().
	Log *slog.Logger
}

// Open opens the model c describes: it generates a builtin model when
// missing, resolves device auto, opens and warms the sessions, and starts
// the batcher with its metrics on env.Metrics.
func Open(c config.Model, env Env) (*Model, error) {
	start := time.Now()
	rt, set, log := env.Runtime, env.Metrics, env.Log
	if set == nil {
		set = metrics.NewSet()
	}
	if log == nil {
		log = slog.Default()
	}
	path, err := resolvePath(c.Path, rt.ModelDir)
	if err != nil {
		return nil, fmt.Errorf("model %q: %w", c.Name, err)
	}
	opts := c.Options // gpu owns them: defaults and checks at Open
	opts.Library = rt.Library
	opts.Logger = log.With("model", c.Name)
	if c.Device == "auto" {
		// auto: the GPU when CUDA loads, else the CPU, saying which and why.
		opts.Device, opts.AllowCPUFallback = "cuda:0", true
		opts.Logger = slog.New(slog.DiscardHandler) // this function logs the choice
	}
	sess, err := gpu.Open(path, opts)
	if err != nil {
		return nil, fmt.Errorf("model %q: %w", c.Name, err)
	}
	if c.Device == "auto" {
		why := "the CUDA execution provider loaded"
		if r := sess.FallbackReason(); r != "" {
			why = "cuda unavailable: " + r
		}
		log.Info("device chosen", "model", c.Name, "device", sess.Device().String(), "why", why)
	}
	if !sess.Batched() {
		log.Info("model served unbatched", "model", c.Name, "why", sess.UnbatchedReason(),
			"effect", "one request per run, tensors of exactly the file's shapes")
	}
	m := &Model{Name: c.Name, Path: path, session: sess, softmax: c.Softmax, stats: newModelStats(sess.MaxBatch()), cfg: c,
		idle: make(chan struct{})}
	for _, t := range sess.Inputs() {
		m.inBytes = append(m.inBytes, t.RowBytes())
	}
	for _, t := range sess.Outputs() {
		m.outBytes = append(m.outBytes, t.RowBytes())
	}
	if m.pre, err = newPreprocessor(sess, c.Preprocess, env.MaxPixels); err != nil {
		sess.Close()
		return nil, fmt.Errorf("model %q: %w", c.Name, err)
	}
	if c.Labels != "" {
		if m.labels, err = loadLabels(c.Labels); err != nil {
			sess.Close()
			return nil, fmt.Errorf("model %q: %w", c.Name, err)
		}
	}
	// The batcher's own settings are the file's; the batch sizes and the
	// runners are the sessions'. Warm-up's timings protect the replica from
	// its first request: admission by time needs them before real batches
	// are measured.
	bc := c.Batcher
	bc.MaxBatchSize, bc.Buckets, bc.InFlight = sess.MaxBatch(), sess.Buckets(), sess.Instances()
	bc.BucketRunTimes = sess.BucketRunTimes()
	if m.batcher, err = batcher.New(c.Name, bc, &runner{m: m}, set); err != nil {
		sess.Close()
		return nil, fmt.Errorf("model %q: %w", c.Name, err)
	}
	m.jobs.New = func() any { return m.newJob() }
	if c.Cache.MaxBytes > 0 {
		if m.cache, err = respcache.New(c.Name, respcache.Config{MaxBytes: int64(c.Cache.MaxBytes), TTL: c.Cache.TTL}, set); err != nil {
			m.batcher.Close(context.Background())
			sess.Close()
			return nil, fmt.Errorf("model %q: cache: %w", c.Name, err)
		}
	}
	m.info = fmt.Sprintf(`inferd_model_info{model=%q,device=%q,runtime=%q,max_batch="%d",instances="%d"}`,
		c.Name, sess.Device().String(), sess.RuntimeVersion(), sess.MaxBatch(), sess.Instances())
	set.GetOrCreateGauge(m.info, func() float64 { return 1 })
	m.ready.Store(true)
	images := "none (not an image model)"
	if m.pre != nil {
		images = "jpeg via " + preprocess.JPEGDecoder()
	}
	log.Info("model ready", "model", c.Name, "path", path, "device", sess.Device().String(), "images", images,
		"max_batch", sess.MaxBatch(), "instances", sess.Instances(), "pinned_memory", sess.PinnedMemory(),
		"took", time.Since(start).Round(time.Millisecond))
	return m, nil
}

func resolvePath(p, dir string) (string, error) {
	name, ok := strings.CutPrefix(p, "builtin:")
	if !ok {
		return p, nil
	}
	spec, err := model.ParseName(name)
	if err != nil {
		return "", err
	}
	if dir == "" {
		dir = model.DefaultCacheDir()
	}
	return model.Ensure(dir, spec)
}

// newPreprocessor sets up image preprocessing when the model takes one
// image input: float32 NCHW [3,H,W] or uint8 NHWC [H,W,3].
func newPreprocessor(sess *gpu.Model, c config.Preprocess, maxPixels int) (*preprocess.Preprocessor, error) {
	in := sess.Inputs()
	if len(in) != 1 {
		return nil, nil
	}
	s := in[0].Shape
	pc := preprocess.Config{Size: c.Size, Resize: c.Resize, Resample: c.Resample, MaxPixels: maxPixels,
		JPEGDCTScaling: c.JPEGDCTScaling}
	switch {
	case in[0].Datatype == "FP32" && len(s) == 4 && s[1] == 3 && s[2] == s[3]:
		pc.Layout, pc.DType = "NCHW", "float32"
	case in[0].Datatype == "UINT8" && len(s) == 4 && s[3] == 3 && s[1] == s[2]:
		pc.Layout, pc.DType = "NHWC", "uint8"
	default:
		return nil, nil // not an image model: the classify endpoint says so
	}
	side := int(s[2])
	if pc.Size == 0 {
		pc.Size = side
	}
	if pc.Size != side {
		return nil, fmt.Errorf("preprocess.size %d: the model takes %dx%d images", pc.Size, side, side)
	}
	if len(c.Mean) == 3 {
		pc.Mean = [3]float32(c.Mean)
	}
	if len(c.Std) == 3 {
		pc.Std = [3]float32(c.Std)
	}
	return preprocess.New(pc)
}

// loadLabels reads a synset.txt-style file: one label per line, a leading
// WordNet id ("n01440764 tench, Tinca tinca") dropped.
func loadLabels(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("labels: %w", err)
	}
	defer f.Close()
	var labels []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if first, rest, ok := strings.Cut(line, " "); ok && isWordNetID(first) {
			line = strings.TrimSpace(rest)
		}
		labels = append(labels, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("labels %s: %w", path, err)
	}
	return labels, nil
}

func isWordNetID(s string) bool {
	if len(s) != 9 || s[0] != 'n' {
		return false
	}
	for _, c := range s[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Admit answers what the batcher would answer a one-row request now
// (overloaded, queue full, closed), before its body is read or decoded.
func (m *Model) Admit() error { return m.batcher.Admit(1, 0, 0) }

// Ready reports whether the model takes requests.
func (m *Model) Ready() bool { return m.ready.Load() }

// Device returns the device the model's sessions run on.
func (m *Model) Device() gpu.Device { return m.session.Device() }

// Session returns the model's sessions, for what times the device without
// the batcher (benchmarks); requests go through Submit.
func (m *Model) Session() *gpu.Model { return m.session }

// Inputs describes the model's inputs, in the order Jobs carry them; the
// first dimension of each shape is the batch, unless !Batched.
func (m *Model) Inputs() []gpu.TensorInfo { return m.session.Inputs() }

// Outputs describes the model's outputs, in the order Jobs carry them.
func (m *Model) Outputs() []gpu.TensorInfo { return m.session.Outputs() }

// Batched reports whether the model's tensors share a batch dimension
// (Shape[0]). An unbatched model takes one request per run, its tensors
// exactly as the file shapes them (gpu.Model.Batched).
func (m *Model) Batched() bool { return m.session.Batched() }

// MaxBatch is the most rows one request or batch may carry.
func (m *Model) MaxBatch() int { return m.session.MaxBatch() }

// Instances is the number of sessions, i.e. batches in flight.
func (m *Model) Instances() int { return m.session.Instances() }

// BatcherConfig is the batcher's configuration in effect.
func (m *Model) BatcherConfig() batcher.Config { return m.batcher.Config() }

// QueueDepth is the number of requests waiting in the batcher.
func (m *Model) QueueDepth() int { return m.batcher.QueueDepth() }

// Images is the model's image preprocessor, or nil when the model does not
// take images.
func (m *Model) Images() *preprocess.Preprocessor { return m.pre }

// Release ends a use of the model begun by Set.Acquire.
func (m *Model) Release() {
	if m.users.Add(-1) == 0 && m.retired.Load() {
		m.wake()
	}
}

// wake closes idle, once.
func (m *Model) wake() { m.idleOnce.Do(func() { close(m.idle) }) }

// retire marks a model no longer served and waits until its last user has
// released it, or ctx ends.
func (m *Model) retire(ctx context.Context) {
	m.retired.Store(true)
	if m.users.Load() == 0 {
		m.wake()
	}
	select {
	case <-m.idle:
	case <-ctx.Done():
	}
}

// Close stops the batcher, finishing what is queued, then frees the
// sessions.
func (m *Model) Close(ctx context.Context) error {
	m.ready.Store(false)
	err := m.batcher.Close(ctx)
	// Even when ctx ended with batches still running, this is safe: the
	// session's Close waits for every lease to come back, and a batch the
	// batcher starts after it gets gpu.ErrClosed.
	m.session.Close()
	if m.cache != nil {
		m.cache.Close()
	}
	return err
}

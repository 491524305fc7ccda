package server

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
	cfg     config.Model // what it was opened from: Reload keeps it when unchanged
	info    string       // its inferd_model_info series
	// users counts the handlers holding the model (Server.acquire), so a
	// reload retires it only once they are done.
	users atomic.Int64

	inBytes  []int // row bytes per input
	outBytes []int // row bytes per output
}

// OpenModel opens the model c describes: it generates a builtin model when
// missing, resolves device auto, opens and warms the sessions, and starts
// the batcher with its metrics on set. Images are bounded by
// sc.MaxPixels.
func OpenModel(c config.Model, rt config.Runtime, sc config.Server, set *metrics.Set, log *slog.Logger) (*Model, error) {
	start := time.Now()
	path, err := resolvePath(c.Path, rt.ModelDir)
	if err != nil {
		return nil, fmt.Errorf("model %q: %w", c.Name, err)
	}
	opts := gpu.Options{
		Library:          rt.Library,
		Device:           c.Device,
		AllowCPUFallback: c.AllowCPUFallback,
		Instances:        c.Instances,
		MaxBatch:         c.MaxBatch,
		Buckets:          c.Buckets,
		IntraOpThreads:   c.IntraOpThreads,
		Logger:           log.With("model", c.Name),
		CUDA: gpu.CUDAOptions{
			GPUMemLimit:              c.CUDA.GPUMemLimit,
			ArenaExtendStrategy:      c.CUDA.ArenaExtendStrategy,
			CuDNNConvAlgoSearch:      c.CUDA.CuDNNConvAlgoSearch,
			CuDNNConvUseMaxWorkspace: c.CUDA.CuDNNConvUseMaxWorkspace,
			PreferNHWC:               c.CUDA.PreferNHWC,
			UseTF32:                  c.CUDA.UseTF32,
		},
	}
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
	m := &Model{Name: c.Name, Path: path, session: sess, softmax: c.Softmax, stats: newModelStats(sess.MaxBatch()), cfg: c}
	for _, t := range sess.Inputs() {
		m.inBytes = append(m.inBytes, t.RowBytes())
	}
	for _, t := range sess.Outputs() {
		m.outBytes = append(m.outBytes, t.RowBytes())
	}
	if m.pre, err = newPreprocessor(sess, c.Preprocess, sc.MaxPixels); err != nil {
		sess.Close()
		return nil, fmt.Errorf("model %q: %w", c.Name, err)
	}
	if c.Labels != "" {
		if m.labels, err = loadLabels(c.Labels); err != nil {
			sess.Close()
			return nil, fmt.Errorf("model %q: %w", c.Name, err)
		}
	}
	bc := batcher.Config{
		MaxBatchSize:   sess.MaxBatch(),
		Buckets:        sess.Buckets(),
		MaxDelay:       c.Batcher.MaxDelay,
		LatencyTarget:  c.Batcher.LatencyTarget,
		QueueCapacity:  c.Batcher.QueueCapacity,
		DefaultTimeout: c.Batcher.DefaultTimeout,
		InFlight:       sess.Instances(),
		Priorities:     c.Batcher.Priorities,
		// Warm-up's timings protect the replica from its first request:
		// admission by time needs them before real batches are measured.
		BucketRunTimes: sess.BucketRunTimes(),
	}
	if m.batcher, err = batcher.New(c.Name, bc, &runner{m: m}, set); err != nil {
		sess.Close()
		return nil, fmt.Errorf("model %q: %w", c.Name, err)
	}
	m.jobs.New = func() any { return m.newJob() }
	m.info = fmt.Sprintf(`inferd_model_info{model=%q,device=%q,runtime=%q,max_batch="%d",instances="%d"}`,
		c.Name, sess.Device().String(), sess.RuntimeVersion(), sess.MaxBatch(), sess.Instances())
	set.GetOrCreateGauge(m.info, func() float64 { return 1 })
	m.ready.Store(true)
	images := "none (not an image model)"
	if m.pre != nil {
		images = "jpeg via " + preprocess.JPEGDecoder()
	}
	log.Info("model ready", "model", c.Name, "path", path, "device", sess.Device().String(), "images", images,
		"max_batch", sess.MaxBatch(), "instances", sess.Instances(), "took", time.Since(start).Round(time.Millisecond))
	return m, nil
}

func resolvePath(p, dir string) (string, error) {
	name, ok := strings.CutPrefix(p, "builtin:")
	if !ok {
		return p, nil
	}
	spec, err := config.BuiltinSpec(name)
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
	pc := preprocess.Config{Size: c.Size, Resize: c.Resize, Resample: c.Resample, MaxPixels: maxPixels}
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

// admit answers what the batcher would answer a one-row request now
// (overloaded, queue full, closed), before its body is read or decoded.
func (m *Model) admit() error { return m.batcher.Admit(1, 0, 0) }

// Ready reports whether the model takes requests.
func (m *Model) Ready() bool { return m.ready.Load() }

// Device returns the device the model's sessions run on, e.g. "cpu".
func (m *Model) Device() string { return m.session.Device().String() }

// Close stops the batcher, finishing what is queued, then frees the
// sessions.
func (m *Model) Close(ctx context.Context) error {
	m.ready.Store(false)
	err := m.batcher.Close(ctx)
	// Even when ctx ended with batches still running, this is safe: the
	// session's Close waits for every lease to come back, and a batch the
	// batcher starts after it gets gpu.ErrClosed.
	m.session.Close()
	return err
}

package gpu

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
)

// Options say where and how a model runs. Zero values mean the defaults
// given in each field's comment. This package owns these settings: their
// YAML keys (a model's entry in inferd.yaml embeds Options), defaults and
// validation; the fields tagged "-" are set by the program, not the file.
type Options struct {
	// Library is the ONNX Runtime shared library; empty means LibraryPath("").
	Library string `yaml:"-"`

	// Inputs and Outputs name the model's tensors to bind, in the order
	// Lease.Input and Lease.Output take them. Empty means all, in the
	// file's order. A name the model lacks is an error at Open.
	Inputs, Outputs []string `yaml:"-"`

	// Device is "cpu" (default) or "cuda:N" ("cuda" means "cuda:0"). The
	// server also takes "auto" (its default): cuda:0 when the CUDA
	// execution provider loads, else cpu, with one log line saying which.
	Device string `yaml:"device"`
	// AllowCPUFallback runs the model on CPU, with one warning, when a cuda
	// device is asked for and the CUDA execution provider cannot be set up.
	// Default false: the error is returned, naming what is missing.
	AllowCPUFallback bool `yaml:"allow_cpu_fallback"`

	// Instances is the number of sessions opened on the device; each runs
	// one batch at a time, so this is how many batches can be in flight.
	// Default 1 on cpu (more instances split the cores between them) and 2
	// on cuda (one batch's copies overlap another's compute).
	Instances int `yaml:"instances"`
	// MaxBatch is the largest batch a run may carry, and so the most rows
	// one request may send. Default 8 on cpu and 64 on cuda; a model whose
	// batch dimension is fixed uses that size. At most 65,536.
	MaxBatch int `yaml:"max_batch"`
	// Buckets are the batch sizes the device sees: a run of n rows is padded
	// to the smallest bucket >= n, so cuDNN tunes a few shapes, once each.
	// Default: powers of two below MaxBatch, then MaxBatch. Must be
	// ascending and end at MaxBatch.
	Buckets []int `yaml:"buckets"`
	// SkipWarmup skips running every bucket once per instance at Open.
	// Default false: the first request of each size would otherwise pay for
	// cuDNN's algorithm search and memory-arena growth.
	SkipWarmup bool `yaml:"-"`

	// IntraOpThreads is ONNX Runtime's intra-op thread count per session.
	// Default 0 lets ONNX Runtime choose (one per physical core); with
	// several CPU instances, set it to cores/Instances.
	IntraOpThreads int `yaml:"intra_op_threads"`
	// Spinning lets idle ONNX Runtime threads spin waiting for work. Default
	// false: spinning buys a little latency for a whole core per thread,
	// which a server sharing its CPU with HTTP handlers cannot spare.
	Spinning bool `yaml:"-"`
	// ProfilePrefix, when set, turns on ONNX Runtime's profiler; each
	// session writes PREFIX_<date>.json with the provider of every node.
	ProfilePrefix string `yaml:"-"`

	// CUDA tunes the CUDA execution provider; ignored on cpu.
	CUDA CUDAOptions `yaml:"cuda"`

	// Logger receives lifecycle lines; nil means slog.Default().
	Logger *slog.Logger `yaml:"-"`
}

// CUDAOptions are the CUDA execution provider settings users tune. Zero
// values leave ONNX Runtime's defaults.
type CUDAOptions struct {
	// GPUMemLimit caps the provider's memory arena, in bytes. Default: no cap.
	GPUMemLimit int64 `yaml:"gpu_mem_limit"`
	// ArenaExtendStrategy is "kNextPowerOfTwo" (ORT default) or
	// "kSameAsRequested" (less waste, more allocations while warming up).
	ArenaExtendStrategy string `yaml:"arena_extend_strategy"`
	// CuDNNConvAlgoSearch is "EXHAUSTIVE" (ORT default: best kernels, slow
	// first run per shape — warm-up pays it), "HEURISTIC" or "DEFAULT".
	CuDNNConvAlgoSearch string `yaml:"cudnn_conv_algo_search"`
	// CuDNNConvUseMaxWorkspace lets cuDNN use as much workspace as it wants
	// (faster convolutions, more memory). nil leaves ORT's default (on).
	CuDNNConvUseMaxWorkspace *bool `yaml:"cudnn_conv_use_max_workspace"`
	// PreferNHWC runs convolutions in NHWC layout (tensor cores on fp16).
	PreferNHWC bool `yaml:"prefer_nhwc"`
	// UseTF32 allows TF32 math on Ampere and later. nil leaves ORT's
	// default (on); false gives exact fp32.
	UseTF32 *bool `yaml:"use_tf32"`
	// PinnedMemory says where each instance's input and output buffers
	// (max_batch rows each) live: "auto" (default) takes page-locked memory
	// from the CUDA runtime the provider loaded (cudaHostAlloc), so the
	// copies to and from the device are direct DMA instead of being staged
	// through a driver buffer, and falls back to Go memory with one log
	// line when that runtime cannot be found; "on" makes that an error at
	// Open; "off" keeps Go memory. Ignored on cpu, as the other cuda
	// settings are, also after a cpu fallback. The trap: pinned memory is
	// locked RAM outside the Go heap (GOMEMLIMIT does not see it), about
	// max_batch x (input + output row bytes) x instances per model: 78 MB
	// for ResNet50 fp32 at the cuda defaults.
	PinnedMemory string `yaml:"pinned_memory"`
}

// Device is a parsed device name.
type Device struct {
	Kind string // "cpu" or "cuda"
	ID   int    // CUDA device ordinal
}

func (d Device) String() string {
	if d.Kind == "cuda" {
		return "cuda:" + strconv.Itoa(d.ID)
	}
	return "cpu"
}

// ParseDevice parses "cpu", "cuda" or "cuda:N".
func ParseDevice(s string) (Device, error) {
	switch {
	case s == "" || s == "cpu":
		return Device{Kind: "cpu"}, nil
	case s == "cuda":
		return Device{Kind: "cuda"}, nil
	case strings.HasPrefix(s, "cuda:"):
		id, err := strconv.Atoi(s[len("cuda:"):])
		if err != nil || id < 0 {
			return Device{}, fmt.Errorf("device %q: want cpu, cuda or cuda:N with N >= 0", s)
		}
		return Device{Kind: "cuda", ID: id}, nil
	}
	return Device{}, fmt.Errorf("device %q: want cpu, cuda or cuda:N", s)
}

// DefaultBuckets returns powers of two below max, then max.
func DefaultBuckets(max int) []int {
	var b []int
	for n := 1; n < max; n *= 2 {
		b = append(b, n)
	}
	return append(b, max)
}

// maxMaxBatch bounds MaxBatch: larger is refused as a likely typo, before
// any buffer is sized from it.
const maxMaxBatch = 1 << 16

// maxInstances bounds Instances, as a likely typo.
const maxInstances = 1024

// Validate reports every value Open would reject in o, one error per
// problem (errors.Join), each starting with the setting's YAML key as
// Options' tags name it ("buckets [8 4]: must be strictly ascending"),
// without opening anything; nil when Open accepts them. A config check
// calls it before any session is opened, and prefixes each line with the
// model's place in the file.
func (o Options) Validate() error {
	_, _, err := o.withDefaults()
	return err
}

// withDefaults validates o and fills the defaults.
func (o Options) withDefaults() (Options, Device, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	dev, err := ParseDevice(o.Device)
	if err != nil {
		errs = append(errs, err)
	}
	if o.Instances == 0 {
		o.Instances = 1
		if dev.Kind == "cuda" {
			o.Instances = 2
		}
	}
	switch {
	case o.Instances < 0:
		bad("instances %d: must be >= 1", o.Instances)
	case o.Instances > maxInstances:
		bad("instances %d: must be <= %d", o.Instances, maxInstances)
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = 8
		if dev.Kind == "cuda" {
			o.MaxBatch = 64
		}
	}
	switch {
	case o.MaxBatch < 0:
		bad("max_batch %d: must be >= 1", o.MaxBatch)
	case o.MaxBatch > maxMaxBatch:
		bad("max_batch %d: must be <= %d", o.MaxBatch, maxMaxBatch)
	case len(o.Buckets) == 0:
		o.Buckets = DefaultBuckets(o.MaxBatch)
	default:
		if err := checkBuckets(o.Buckets, o.MaxBatch); err != nil {
			errs = append(errs, err)
		}
	}
	if o.IntraOpThreads < 0 {
		bad("intra_op_threads %d: must be >= 0", o.IntraOpThreads)
	}
	switch o.CUDA.ArenaExtendStrategy {
	case "", "kNextPowerOfTwo", "kSameAsRequested":
	default:
		bad("cuda.arena_extend_strategy %q: want kNextPowerOfTwo or kSameAsRequested", o.CUDA.ArenaExtendStrategy)
	}
	switch o.CUDA.CuDNNConvAlgoSearch {
	case "", "EXHAUSTIVE", "HEURISTIC", "DEFAULT":
	default:
		bad("cuda.cudnn_conv_algo_search %q: want EXHAUSTIVE, HEURISTIC or DEFAULT", o.CUDA.CuDNNConvAlgoSearch)
	}
	switch o.CUDA.PinnedMemory {
	case "":
		o.CUDA.PinnedMemory = "auto"
	case "auto", "on", "off":
	default:
		bad("cuda.pinned_memory %q: want auto, on or off", o.CUDA.PinnedMemory)
	}
	if o.CUDA.GPUMemLimit < 0 {
		bad("cuda.gpu_mem_limit %d: must be >= 0", o.CUDA.GPUMemLimit)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, dev, errors.Join(errs...)
}

func checkBuckets(b []int, max int) error {
	for i := 1; i < len(b); i++ {
		if b[i] <= b[i-1] {
			return fmt.Errorf("buckets %v: must be strictly ascending", b)
		}
	}
	if b[0] < 1 {
		return fmt.Errorf("buckets %v: sizes must be >= 1", b)
	}
	if b[len(b)-1] != max {
		return fmt.Errorf("buckets %v: the last must equal max_batch %d", b, max)
	}
	return nil
}

// providerOptions returns the CUDA provider's key/value settings.
func (o Options) providerOptions(dev Device) map[string]string {
	m := map[string]string{"device_id": strconv.Itoa(dev.ID)}
	c := o.CUDA
	if c.GPUMemLimit > 0 {
		m["gpu_mem_limit"] = strconv.FormatInt(c.GPUMemLimit, 10)
	}
	if c.ArenaExtendStrategy != "" {
		m["arena_extend_strategy"] = c.ArenaExtendStrategy
	}
	if c.CuDNNConvAlgoSearch != "" {
		m["cudnn_conv_algo_search"] = c.CuDNNConvAlgoSearch
	}
	if c.CuDNNConvUseMaxWorkspace != nil {
		m["cudnn_conv_use_max_workspace"] = boolOpt(*c.CuDNNConvUseMaxWorkspace)
	}
	if c.PreferNHWC {
		m["prefer_nhwc"] = "1"
	}
	if c.UseTF32 != nil {
		m["use_tf32"] = boolOpt(*c.UseTF32)
	}
	return m
}

func boolOpt(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

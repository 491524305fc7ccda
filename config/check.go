package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/inferd/inferd/batcher"
	"github.com/inferd/inferd/gpu"
)

// Check is the startup check short of its side effects: Validate, plus
// the files the config names are there and readable (a model path that is
// not builtin:, labels, an ONNX Runtime library given as a path). It opens
// no session, generates no model and binds no port. It reports every
// problem, one line each. Trap: relative paths are taken from the working
// directory, as the server takes them.
func (c *Config) Check() error {
	var errs []error
	if err := c.Validate(); err != nil {
		errs = append(errs, err) // already one line per problem, each naming the file
	}
	var files []error
	if lib := c.Runtime.Library; strings.Contains(lib, "/") {
		// A bare soname is left to the dynamic linker's search path.
		files = append(files, checkFile("runtime.library", lib, "the ONNX Runtime shared library"))
	}
	for i, m := range c.Models {
		key := fmt.Sprintf("models[%d]", i)
		if !strings.HasPrefix(m.Path, "builtin:") {
			files = append(files, checkFile(key+".path", m.Path, "an ONNX file"))
		}
		if m.Labels != "" {
			files = append(files, checkFile(key+".labels", m.Labels, "a labels file"))
		}
	}
	errs = append(errs, c.inFile(files))
	return errors.Join(errs...)
}

// checkFile says what is wrong with the file at path, named key in the
// config; nil when it is a regular file this process can read.
func checkFile(key, path, want string) error {
	f, err := os.Open(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the key and the path already say which file
		}
		return fmt.Errorf("config: %s %q: %w", key, path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("config: %s %q: %w", key, path, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("config: %s %q: not a regular file, want %s", key, path, want)
	}
	return nil
}

// CheckDevice checks a device name as a model's device key takes it:
// auto, cpu or cuda:N ("cuda" means cuda:0).
func CheckDevice(device string) error {
	if device == "auto" {
		return nil
	}
	if _, err := gpu.ParseDevice(device); err != nil || device == "" {
		return fmt.Errorf("device %q: want auto, cpu or cuda:N", device)
	}
	return nil
}

// checkRun checks a model's values against what gpu.Open and batcher.New
// refuse, in their words with the key as the file writes it. Values
// checkModel already refused (negative counts) are left out, so each
// problem is said once.
func checkRun(key string, m Model) []error {
	var errs []error
	dev := m.Device
	if err := CheckDevice(dev); err != nil {
		errs = append(errs, fmt.Errorf("config: %s.%w", key, err))
		dev = "cpu"
	}
	if dev == "auto" {
		dev = "cuda:0" // as the server opens it: cuda's defaults, cpu's after a fallback
	}
	nonneg := func(v int) int { return max(v, 0) }
	// gpu.Options.Validate stops at the first problem: one field at a time.
	for _, o := range []gpu.Options{
		{Device: dev, MaxBatch: nonneg(m.MaxBatch), Buckets: m.Buckets},
		{Device: dev, CUDA: gpu.CUDAOptions{ArenaExtendStrategy: m.CUDA.ArenaExtendStrategy}},
		{Device: dev, CUDA: gpu.CUDAOptions{CuDNNConvAlgoSearch: m.CUDA.CuDNNConvAlgoSearch}},
		{Device: dev, CUDA: gpu.CUDAOptions{GPUMemLimit: m.CUDA.GPUMemLimit}},
	} {
		if err := o.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("config: %s.%w", key, err))
		}
	}
	// The batcher gets max_batch and the instances from the sessions, and
	// checks the bounds gpu does not; buckets and durations gpu and
	// checkModel have checked.
	for _, f := range []struct {
		yaml, field string // the key in the file, batcher's name for it
		c           batcher.Config
	}{
		{"max_batch", "max_batch_size", batcher.Config{MaxBatchSize: nonneg(m.MaxBatch)}},
		{"instances", "in_flight", batcher.Config{InFlight: nonneg(m.Instances)}},
		{"batcher.queue_capacity", "queue_capacity", batcher.Config{QueueCapacity: nonneg(m.Batcher.QueueCapacity)}},
		{"batcher.priorities", "priorities", batcher.Config{Priorities: nonneg(m.Batcher.Priorities)}},
	} {
		err := f.c.Validate()
		if err == nil {
			continue
		}
		if rest, ok := strings.CutPrefix(err.Error(), "batcher: "+f.field+" "); ok {
			errs = append(errs, fmt.Errorf("config: %s.%s %s", key, f.yaml, rest))
		} else {
			errs = append(errs, fmt.Errorf("config: %s.%s: %w", key, f.yaml, err))
		}
	}
	return errs
}

package config

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"slices"
	"strings"

	"github.com/inferd/inferd/gpu"
	"github.com/inferd/inferd/model"
	"github.com/inferd/inferd/preprocess"
)

// Check is the startup check short of its side effects: Validate, plus
// what the files the config names say, as startup reads them. A model path
// that is not builtin:, a labels file and an ONNX Runtime library given as
// a path must be regular files this process can read; a model file must be
// an ONNX model whose inputs and outputs inferd can serve (read as
// gpu.Inspect reads them; a builtin: model's are known without generating
// it); a labels file must have one line per class when the model's first
// output is FP32 [N,classes]; and the preprocess section must fit the
// model's image input, as startup sets it up. The keys file of auth: must
// parse as package auth reads it, and the certificate and key of tls:
// load as a pair (a value Validate refused is not read). It opens no
// session to keep, generates no model and binds no port, but it loads ONNX
// Runtime (once per process, as startup does) when there is a model file
// to read; a library that does not load is said once and the model files
// are then not read.
// It reports every problem, one line each. Trap: relative paths are taken
// from the working directory, as the server takes them.
func (c *Config) Check() error {
	var errs []error
	if err := c.Validate(); err != nil {
		errs = append(errs, err) // already one line per problem, each naming the file
	}
	var files []error
	ins := inspector{library: c.Runtime.Library}
	if lib := c.Runtime.Library; strings.Contains(lib, "/") {
		// A bare soname is left to the dynamic linker's search path.
		if err := checkFile("runtime.library", lib, "the ONNX Runtime shared library"); err != nil {
			files = append(files, err)
			ins.failed = true // said: the models' files are not read
		}
	}
	for i, m := range c.Models {
		key := fmt.Sprintf("models[%d]", i)
		inputs, outputs, err := ins.tensors(key, m)
		files = append(files, err)
		if m.Labels != "" {
			err := checkFile(key+".labels", m.Labels, "a labels file")
			if err == nil && outputs != nil {
				err = checkLabels(key, m.Labels, outputs[0])
			}
			files = append(files, err)
		}
		if inputs != nil {
			files = append(files, checkPreprocess(key, m.Preprocess, max(c.Server.MaxPixels, 0), inputs))
		}
	}
	if c.Auth.Validate() == nil {
		for _, err := range lines(c.Auth.Check()) {
			files = append(files, fmt.Errorf("config: auth.%w", err))
		}
	}
	if c.TLS.Validate() == nil {
		for _, err := range lines(c.TLS.Check()) {
			files = append(files, fmt.Errorf("config: tls.%w", err))
		}
	}
	errs = append(errs, c.inFile(files))
	return errors.Join(errs...)
}

// inspector reads the inputs and outputs of the models a config names,
// loading ONNX Runtime for the first model file and only once.
type inspector struct {
	library string // runtime.library
	failed  bool   // the library did not load, and that was said
}

// tensors returns the inputs and outputs of model m, named key in the
// config: a builtin: model's as package model writes them, a file's as
// gpu.Inspect reads them. They are nil when they cannot be known: a
// builtin name Validate refused, a file that is not a model (the error
// says why), a library that did not load.
func (in *inspector) tensors(key string, m Model) (inputs, outputs []gpu.TensorInfo, err error) {
	if name, ok := strings.CutPrefix(m.Path, "builtin:"); ok {
		s, err := model.ParseName(name)
		if err != nil {
			return nil, nil, nil // Validate said so
		}
		inputs, outputs = builtinTensors(s)
		return inputs, outputs, nil
	}
	if err := checkFile(key+".path", m.Path, "an ONNX file"); err != nil {
		return nil, nil, err
	}
	if in.failed {
		return nil, nil, nil
	}
	inputs, outputs, err = gpu.Inspect(in.library, m.Path)
	switch {
	case errors.Is(err, gpu.ErrLibrary):
		in.failed = true
		return nil, nil, fmt.Errorf("config: %w; model files not read", err)
	case err != nil:
		return nil, nil, fmt.Errorf("config: %s.path %q: %w", key, m.Path, err)
	}
	return inputs, outputs, nil
}

// builtinTensors are the inputs and outputs of the generated model s, as
// package model documents them: "input", float32 [N,3,224,224] or, for a
// uint8 model, uint8 [N,224,224,3]; "output", float32 [N,1000].
// TestBuiltinTensors holds them to what gpu.Inspect reads in the file.
func builtinTensors(s model.Spec) (inputs, outputs []gpu.TensorInfo) {
	const side = model.ImageSize
	in := gpu.TensorInfo{Name: model.InputName, Datatype: "FP32", Shape: []int64{-1, 3, side, side}}
	if s.Input == model.Uint8 {
		in = gpu.TensorInfo{Name: model.InputName, Datatype: "UINT8", Shape: []int64{-1, side, side, 3}}
	}
	out := gpu.TensorInfo{Name: model.OutputName, Datatype: "FP32", Shape: []int64{-1, model.NumClasses}}
	return []gpu.TensorInfo{in}, []gpu.TensorInfo{out}
}

// checkLabels compares the lines of the labels file at path with the
// classes of out, the model's first output, when it is FP32 [N,classes]:
// the scores the classify endpoint labels. Other outputs are not labelled,
// and are not compared. Blank lines at the end are not counted.
func checkLabels(key, path string, out gpu.TensorInfo) error {
	if out.Datatype != "FP32" || len(out.Shape) != 2 || out.Shape[1] <= 0 {
		return nil
	}
	n, err := countLabels(path)
	if err != nil {
		return fmt.Errorf("config: %s.labels %q: %w", key, path, err)
	}
	if classes := out.Shape[1]; int64(n) != classes {
		return fmt.Errorf("config: %s.labels %q: %d labels, model output %q has %d classes", key, path, n, out.Name, classes)
	}
	return nil
}

// countLabels counts the lines of a labels file as the server reads them
// (bufio.Scanner's lines, so a line too long for it fails here as there),
// less the blank lines at its end.
func countLabels(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the caller names the file
		}
		return 0, err
	}
	defer f.Close()
	n, blank := 0, 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
		if strings.TrimSpace(sc.Text()) == "" {
			blank++
		} else {
			blank = 0
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("line %d: %w", n+1, err)
	}
	return n - blank, nil
}

// checkPreprocess checks a model's preprocess section against its inputs
// as startup sets up image preprocessing: when the model takes one image
// (FP32 [N,3,S,S] or UINT8 [N,S,S,3]), size must be S or 0, and the rest
// must be what package preprocess takes, in its words with the key as the
// file writes it. Values checkModel refused were said there and are left
// out; a model that takes no image has no preprocessing to check.
func checkPreprocess(key string, p Preprocess, maxPixels int, inputs []gpu.TensorInfo) error {
	if len(inputs) != 1 {
		return nil
	}
	s := inputs[0].Shape
	pc := preprocess.Config{MaxPixels: maxPixels}
	switch {
	case inputs[0].Datatype == "FP32" && len(s) == 4 && s[1] == 3 && s[2] == s[3]:
		pc.Layout, pc.DType = preprocess.LayoutNCHW, preprocess.DTypeFloat32
	case inputs[0].Datatype == "UINT8" && len(s) == 4 && s[3] == 3 && s[1] == s[2]:
		pc.Layout, pc.DType = preprocess.LayoutNHWC, preprocess.DTypeUint8
	default:
		return nil
	}
	side := int(s[2])
	if p.Size != 0 && p.Size != side {
		if p.Size < 0 {
			return nil // checkModel said so
		}
		return fmt.Errorf("config: %s.preprocess.size %d: the model takes %dx%d images", key, p.Size, side, side)
	}
	bad := func(v []float32) bool {
		return len(v) != 0 && len(v) != 3 || slices.ContainsFunc(v, func(x float32) bool { return x <= 0 })
	}
	if p.Resize < 0 || len(p.Mean) != 0 && len(p.Mean) != 3 || bad(p.Std) || !slices.Contains([]string{"", "pil", "float"}, p.Resample) {
		return nil // checkModel said so
	}
	pc.Size, pc.Resize, pc.Resample = side, p.Resize, p.Resample
	if len(p.Mean) == 3 {
		pc.Mean = [3]float32(p.Mean)
	}
	if len(p.Std) == 3 {
		pc.Std = [3]float32(p.Std)
	}
	if _, err := preprocess.New(pc); err != nil {
		if rest, ok := strings.CutPrefix(err.Error(), preprocess.ErrConfig.Error()+": "); ok {
			return fmt.Errorf("config: %s.preprocess.%s", key, rest)
		}
		return fmt.Errorf("config: %s.preprocess: %w", key, err)
	}
	return nil
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

// CheckListen checks a listen address as the listen key takes it:
// HOST:PORT, with an empty HOST for every address (":8000").
func CheckListen(addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("listen %q: want HOST:PORT, e.g. :8000", addr)
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

// checkRun checks a model's run and batcher settings with their owners'
// validation (gpu.Options, batcher.Config), every problem on a line of its
// own, the key as the file writes it: models[1].max_batch 100000: must be
// <= 65536. Device auto is checked as the server opens it: cuda:0's
// defaults first.
func checkRun(key string, m Model) []error {
	var errs []error
	o := m.Options
	if err := CheckDevice(o.Device); err != nil {
		errs = append(errs, fmt.Errorf("config: %s.%w", key, err))
		o.Device = "cpu" // said; check the rest
	}
	if o.Device == "auto" {
		o.Device = "cuda:0"
	}
	for _, err := range lines(o.Validate()) {
		if strings.HasPrefix(err.Error(), "device ") {
			continue // CheckDevice said it in the server's terms
		}
		errs = append(errs, fmt.Errorf("config: %s.%w", key, err))
	}
	for _, err := range lines(m.Batcher.Validate()) {
		msg := strings.TrimPrefix(err.Error(), "batcher: ")
		errs = append(errs, fmt.Errorf("config: %s.batcher.%s", key, msg))
	}
	return errs
}

// lines splits an errors.Join into its errors; nil for nil.
func lines(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err != nil {
		return []error{err}
	}
	return nil
}

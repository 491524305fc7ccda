// Command modelgen writes one of inferd's ONNX models (see package model).
//
// Usage:
//
//	modelgen [-arch resnet50|tiny] [-dtype float32|float16] [-input float32|uint8]
//	         [-seed N] [-logits] [-o PATH]
//
// Without -o the model is generated into the model cache (model.DefaultCacheDir)
// unless already there; with -o it is written to PATH ("-" for stdout). The
// model's path is printed on stdout, its parameter count, MACs per image and
// size on stderr.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/inferd/inferd/model"
)

func main() {
	var s model.Spec
	flag.StringVar(&s.Arch, "arch", model.ArchResNet50, "architecture: resnet50 or tiny")
	flag.StringVar(&s.DType, "dtype", model.Float32, "weights and compute: float32 or float16")
	flag.StringVar(&s.Input, "input", model.Float32, "input: float32 (normalised NCHW) or uint8 (raw NHWC pixels)")
	flag.Uint64Var(&s.Seed, "seed", model.DefaultSeed, "weights seed")
	flag.BoolVar(&s.Logits, "logits", false, "output raw logits instead of softmax probabilities")
	out := flag.String("o", "", "output path, - for stdout (default: the model cache, "+model.DefaultCacheDir()+")")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "modelgen: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	if err := run(s, *out); err != nil {
		fmt.Fprintf(os.Stderr, "modelgen: %v\n", err)
		os.Exit(1)
	}
}

func run(s model.Spec, out string) error {
	params, macs, err := model.Stats(s)
	if err != nil {
		return err
	}
	start := time.Now()
	var path string
	switch out {
	case "":
		path, err = model.Ensure(model.DefaultCacheDir(), s)
	case "-":
		path, err = "-", model.Write(os.Stdout, s)
	default:
		path, err = out, writeFile(out, s)
	}
	if err != nil {
		return err
	}
	size, err := model.Size(s)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "%s: %d parameters, %d MACs per image (%.3f G), %d bytes, %v\n",
		s.Name(), params, macs, float64(macs)/1e9, size, time.Since(start).Round(time.Millisecond))
	if out != "-" {
		fmt.Println(path)
	}
	return nil
}

// writeFile writes the model to path through a temporary file in the same
// directory, so path never holds a partial model.
func writeFile(path string, s model.Spec) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create temp file: %w", err)
	}
	tmp := f.Name()
	err = model.Write(f, s)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

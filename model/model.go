// Package model writes the ONNX models inferd serves and tests with: a
// ResNet-50 v1.5 image classifier and a tiny stand-in with the same contract,
// both with random weights that are a pure function of a seed.
//
// The models are encoded by hand with protowire (no Python, no downloads):
// ONNX IR version 8, opset 17. Every model takes "input" — float32
// [N,3,224,224] normalised NCHW, or uint8 [N,224,224,3] raw NHWC pixels that
// the graph itself casts, transposes and normalises with the ImageNet mean and
// standard deviation — and returns "output", float32 [N,1000]: softmax
// probabilities, or raw logits when Spec.Logits is set. The batch dimension is
// symbolic ("N").
package model

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Spec selects a model. The zero value is the default model: float32
// ResNet-50 with float32 input, softmax output and seed 1.
type Spec struct {
	// Arch is "resnet50" (the default) or "tiny", a few-layer model with the
	// same input and output contract for fast tests.
	Arch string
	// DType is "float32" (the default) or "float16": float16 weights and
	// compute, with float32 graph inputs and outputs through Cast nodes (the
	// softmax runs in float32 on logits cast back).
	DType string
	// Input is "float32" (the default): "input" is float32 [N,3,224,224],
	// already normalised; or "uint8": "input" is uint8 [N,224,224,3] raw
	// pixels and the graph normalises them itself.
	Input string
	// Seed determines the weights; 0 means the default, 1.
	Seed uint64
	// Logits makes "output" the raw logits instead of probabilities.
	Logits bool
}

// Architectures, data types and input kinds accepted in a Spec.
const (
	ArchResNet50 = "resnet50"
	ArchTiny     = "tiny"
	Float32      = "float32"
	Float16      = "float16"
	Uint8        = "uint8"
)

// Input and output names and the image geometry shared by every model.
const (
	InputName   = "input"
	OutputName  = "output"
	ImageSize   = 224
	NumClasses  = 1000
	DefaultSeed = 1
)

// ImageNet channel statistics (RGB) on the 0..1 scale, used by the uint8
// input variant on the 0..255 scale.
var (
	Mean = [3]float32{0.485, 0.456, 0.406}
	Std  = [3]float32{0.229, 0.224, 0.225}
)

// withDefaults fills in the zero fields.
func (s Spec) withDefaults() Spec {
	if s.Arch == "" {
		s.Arch = ArchResNet50
	}
	if s.DType == "" {
		s.DType = Float32
	}
	if s.Input == "" {
		s.Input = Float32
	}
	if s.Seed == 0 {
		s.Seed = DefaultSeed
	}
	return s
}

// Validate reports whether s names a model this package can write.
func (s Spec) Validate() error {
	s = s.withDefaults()
	switch s.Arch {
	case ArchResNet50, ArchTiny:
	default:
		return fmt.Errorf("model: unknown arch %q (want %s or %s)", s.Arch, ArchResNet50, ArchTiny)
	}
	switch s.DType {
	case Float32, Float16:
	default:
		return fmt.Errorf("model: unknown dtype %q (want %s or %s)", s.DType, Float32, Float16)
	}
	switch s.Input {
	case Float32, Uint8:
	default:
		return fmt.Errorf("model: unknown input %q (want %s or %s)", s.Input, Float32, Uint8)
	}
	return nil
}

// Name returns the canonical file stem of the model: the arch followed by
// "-fp16", "-uint8", "-logits" and "-seed<N>" for each non-default setting,
// e.g. "resnet50", "resnet50-fp16", "tiny-fp16-uint8-seed7", "tiny-logits".
func (s Spec) Name() string {
	s = s.withDefaults()
	var b strings.Builder
	b.WriteString(s.Arch)
	if s.DType == Float16 {
		b.WriteString("-fp16")
	} else if s.DType != Float32 {
		b.WriteString("-" + s.DType)
	}
	if s.Input != Float32 {
		b.WriteString("-" + s.Input)
	}
	if s.Logits {
		b.WriteString("-logits")
	}
	if s.Seed != DefaultSeed {
		b.WriteString("-seed" + strconv.FormatUint(s.Seed, 10))
	}
	return b.String()
}

// Write encodes the model selected by s to w. The bytes depend only on s.
func Write(w io.Writer, s Spec) error {
	b, err := build(s)
	if err != nil {
		return err
	}
	return encodeModel(&b.g).writeTo(w)
}

// Bytes returns the encoded model selected by s.
func Bytes(s Spec) ([]byte, error) {
	b, err := build(s)
	if err != nil {
		return nil, err
	}
	m := encodeModel(&b.g)
	var buf bytes.Buffer
	buf.Grow(int(m.size))
	if err := m.writeTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Stats returns the number of learned parameters of the model selected by s
// (convolution and fully connected weights and biases) and the
// multiply-accumulates of its convolutions and fully connected layer for one
// image. It builds the graph without generating weights, so it is cheap.
func Stats(s Spec) (params, macs int64, err error) {
	b, err := build(s)
	if err != nil {
		return 0, 0, err
	}
	return b.params, b.macs, nil
}

// Size returns the size in bytes of the encoded model selected by s without
// generating its weights.
func Size(s Spec) (int64, error) {
	b, err := build(s)
	if err != nil {
		return 0, err
	}
	return encodeModel(&b.g).size, nil
}

// build assembles the graph of s; weights are generated later, when written.
func build(s Spec) (*builder, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	s = s.withDefaults()
	compute := typeFloat
	if s.DType == Float16 {
		compute = typeFloat16
	}
	b := newBuilder(s.Seed, compute)
	x := b.stem(s.Input)
	var desc string
	var fcStd float64
	switch s.Arch {
	case ArchResNet50:
		x = resnet50(b, x)
		desc, fcStd = resnet50Doc, resnet50FCStd
	case ArchTiny:
		x = tiny(b, x)
		desc, fcStd = tinyDoc, tinyFCStd
	}
	b.head(x, fcStd, s.Logits)
	if b.err != nil {
		return nil, fmt.Errorf("model: build %s: %w", s.Name(), b.err)
	}
	out, kind := "softmax probabilities", "probabilities"
	if s.Logits {
		out, kind = "logits", "logits"
	}
	in := "float32 [N,3,224,224] normalised NCHW"
	if s.Input == Uint8 {
		in = "uint8 [N,224,224,3] raw NHWC pixels, normalised in the graph"
	}
	b.g.name = s.Name()
	b.g.doc = fmt.Sprintf("%s; %s weights and compute; input %s; output float32 [N,1000] %s",
		desc, s.DType, in, out)
	b.g.modelDoc = fmt.Sprintf("%s with random weights from seed %d, written by inferd-modelgen", s.Name(), s.Seed)
	b.g.metadata = [][2]string{
		{"inferd.name", s.Name()},
		{"inferd.output", kind},
		{"inferd.seed", strconv.FormatUint(s.Seed, 10)},
	}
	return b, nil
}

// stem declares "input" and returns the normalised NCHW image in the compute
// type.
func (b *builder) stem(input string) string {
	var x string
	if input == Uint8 {
		x = b.input(InputName, typeUint8, ImageSize, ImageSize, 3)
		x = b.transpose("preprocess.transpose", x, 0, 3, 1, 2)
		x = b.cast("preprocess.cast", x, typeFloat)
		var mean, std [3]float32
		for c := range 3 {
			mean[c] = 255 * Mean[c]
			std[c] = 255 * Std[c]
		}
		m := b.constant("preprocess.mean", []int64{1, 3, 1, 1}, mean[:])
		d := b.constant("preprocess.std", []int64{1, 3, 1, 1}, std[:])
		x = b.binary("Sub", "preprocess.sub", x, m)
		x = b.binary("Div", "preprocess.div", x, d)
	} else {
		x = b.input(InputName, typeFloat, 3, ImageSize, ImageSize)
	}
	if b.compute != typeFloat {
		x = b.cast("input.fp16", x, b.compute)
	}
	return x
}

// head maps the flattened features x to "output": a fully connected layer to
// the classes, a cast back to float32 and, unless logits, a softmax.
func (b *builder) head(x string, fcStd float64, logits bool) {
	x = b.gemm("fc", x, NumClasses, fcStd)
	if b.compute != typeFloat {
		x = b.cast("fc.float32", x, typeFloat)
	}
	if !logits {
		b.softmax("softmax", x)
	}
	b.output(OutputName, typeFloat)
}

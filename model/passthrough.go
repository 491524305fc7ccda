package model

import (
	"fmt"
	"io"
	"strconv"
)

// Tensor describes one input of a pass-through model (WritePassThrough):
// its name, its KServe datatype (FP32, UINT8, UINT32, INT64 or BOOL) and
// its shape, -1 for a symbolic dimension.
type Tensor struct {
	Name     string
	Datatype string
	Shape    []int64
}

// OIPExample is the example model of the Open Inference Protocol's
// specification: input0 UINT32 [2,2] and input1 BOOL [3], which share no
// batch dimension.
var OIPExample = []Tensor{
	{Name: "input0", Datatype: "UINT32", Shape: []int64{2, 2}},
	{Name: "input1", Datatype: "BOOL", Shape: []int64{3}},
}

// ONNX TensorProto.DataType values of the pass-through models' tensors.
const (
	typeUint32 dataType = 12
	typeBool   dataType = 9
)

var passThroughTypes = map[string]dataType{
	"FP32": typeFloat, "UINT8": typeUint8, "UINT32": typeUint32, "INT64": typeInt64, "BOOL": typeBool,
}

// WritePassThrough writes a model for tests of shapes and datatypes: for
// each input "inputK" of ins, in order, an output "outputK" of the same
// datatype and shape that is the input itself (Identity), or its negation
// (Not) for BOOL. A symbolic dimension is named "N" when first, "D<i>"
// otherwise, and the output's is the input's.
func WritePassThrough(w io.Writer, ins []Tensor) error {
	b := newBuilder(DefaultSeed, typeFloat)
	for k, t := range ins {
		dt, ok := passThroughTypes[t.Datatype]
		if !ok {
			return fmt.Errorf("model: pass-through input %q: datatype %q (want FP32, UINT8, UINT32, INT64 or BOOL)", t.Name, t.Datatype)
		}
		vi := valueInfo{name: t.Name, dtype: dt}
		for i, d := range t.Shape {
			switch {
			case d >= 0:
				vi.dims = append(vi.dims, dim{value: d})
			case i == 0:
				vi.dims = append(vi.dims, dim{param: "N"})
			default:
				vi.dims = append(vi.dims, dim{param: "D" + strconv.Itoa(i)})
			}
		}
		b.claim(t.Name)
		b.g.inputs = append(b.g.inputs, vi)
		op := "Identity"
		if dt == typeBool {
			op = "Not"
		}
		out := "output" + strconv.Itoa(k)
		b.claim(out)
		b.g.nodes = append(b.g.nodes, node{name: out, opType: op, inputs: []string{t.Name}, outputs: []string{out}})
		ovi := vi
		ovi.name = out
		b.g.outputs = append(b.g.outputs, ovi)
	}
	if b.err != nil {
		return fmt.Errorf("model: pass-through: %w", b.err)
	}
	b.g.name = "pass-through"
	b.g.doc = "test model: each output is its input (Identity; Not for BOOL)"
	return encodeModel(&b.g).writeTo(w)
}

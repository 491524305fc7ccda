package gpu

import (
	"fmt"
	"slices"
	"strconv"

	ort "github.com/yalue/onnxruntime_go"
)

// TensorInfo describes one model input or output as the model file declares
// it. Datatype uses the KServe v2 names (FP32, FP16, UINT8, INT64, ...).
// Shape has -1 for a symbolic dimension; Shape[0] is the batch dimension of
// a batched model's tensor. A tensor of an unbatched model (Batched false)
// has no batch dimension: its Shape is fixed, and one "row" is the whole
// tensor.
type TensorInfo struct {
	Name      string
	Datatype  string
	Shape     []int64
	elemType  ort.TensorElementDataType
	unbatched bool
}

// Batched reports whether Shape[0] is a batch dimension; false for the
// tensors of a model served unbatched (Model.Batched).
func (t TensorInfo) Batched() bool { return !t.unbatched }

// ElemSize is the size of one element in bytes.
func (t TensorInfo) ElemSize() int { return elemSizes[t.Datatype] }

// RowShape is the shape of one batch row: Shape without the batch
// dimension; the whole Shape when the tensor has none.
func (t TensorInfo) RowShape() []int64 { return slices.Clone(t.rowDims()) }

func (t TensorInfo) rowDims() []int64 {
	if t.unbatched {
		return t.Shape
	}
	return t.Shape[1:]
}

// RowElems is the number of elements in one batch row (of the whole
// tensor when it has no batch dimension).
func (t TensorInfo) RowElems() int {
	n := 1
	for _, d := range t.rowDims() {
		n *= int(d)
	}
	return n
}

// RowBytes is the size of one batch row in bytes.
func (t TensorInfo) RowBytes() int { return t.RowElems() * t.ElemSize() }

var datatypeNames = map[ort.TensorElementDataType]string{
	ort.TensorElementDataTypeFloat:   "FP32",
	ort.TensorElementDataTypeFloat16: "FP16",
	ort.TensorElementDataTypeDouble:  "FP64",
	ort.TensorElementDataTypeUint8:   "UINT8",
	ort.TensorElementDataTypeInt8:    "INT8",
	ort.TensorElementDataTypeUint16:  "UINT16",
	ort.TensorElementDataTypeInt16:   "INT16",
	ort.TensorElementDataTypeUint32:  "UINT32",
	ort.TensorElementDataTypeInt32:   "INT32",
	ort.TensorElementDataTypeUint64:  "UINT64",
	ort.TensorElementDataTypeInt64:   "INT64",
	ort.TensorElementDataTypeBool:    "BOOL",
}

var elemSizes = map[string]int{
	"FP32": 4, "FP16": 2, "FP64": 8, "UINT8": 1, "INT8": 1, "UINT16": 2,
	"INT16": 2, "UINT32": 4, "INT32": 4, "UINT64": 8, "INT64": 8, "BOOL": 1,
}

// tensorInfo converts ONNX Runtime's description, checking that the tensor
// is one inferd serves: a tensor of a type it supports, of rank 1 or more.
// Its dimensions are checked with the model's other tensors (layout).
func tensorInfo(kind string, io ort.InputOutputInfo) (TensorInfo, error) {
	if io.OrtValueType != ort.ONNXTypeTensor {
		return TensorInfo{}, fmt.Errorf("%w: %s %q is a %s, not a tensor", ErrBadModel, kind, io.Name, io.OrtValueType)
	}
	dt, ok := datatypeNames[io.DataType]
	if !ok {
		return TensorInfo{}, fmt.Errorf("%w: %s %q has element type %s, which inferd does not serve", ErrBadModel, kind, io.Name, io.DataType)
	}
	shape := slices.Clone([]int64(io.Dimensions))
	if len(shape) == 0 {
		return TensorInfo{}, fmt.Errorf("%w: %s %q is a scalar; inferd serves tensors of one dimension or more", ErrBadModel, kind, io.Name)
	}
	for i, d := range shape {
		if d <= 0 {
			shape[i] = -1
		}
	}
	return TensorInfo{Name: io.Name, Datatype: dt, Shape: shape, elemType: io.DataType}, nil
}

// layout decides how a model whose tensors are ins and outs is served, and
// marks them. Batched: every tensor's first dimension is symbolic or one
// fixed size shared by all, and every other dimension is fixed. Unbatched
// (one request per run, shapes exactly as the file gives them): the first
// dimensions differ, and every dimension is fixed; why says which tensor
// has no batch dimension. Anything else cannot be served: an ErrBadModel
// error that names the tensor and the dimension.
func layout(ins, outs []TensorInfo) (batched bool, why string, err error) {
	all := slices.Concat(ins, outs)
	kind := func(i int) string {
		if i < len(ins) {
			return "input"
		}
		return "output"
	}
	batched = true
	first := -1 // the first tensor with a fixed first dimension
	for i, t := range all {
		if t.Shape[0] < 0 {
			continue
		}
		if first < 0 {
			first = i
			continue
		}
		if f := all[first]; t.Shape[0] != f.Shape[0] {
			batched = false
			why = fmt.Sprintf("%s %q %s shares no batch dimension with %s %q %s", kind(i), t.Name, FormatShape(t.Shape), kind(first), f.Name, FormatShape(f.Shape))
			break
		}
	}
	for i, t := range all {
		from := 1
		if !batched {
			from = 0
		}
		for d := from; d < len(t.Shape); d++ {
			if t.Shape[d] > 0 {
				continue
			}
			if batched {
				return false, "", fmt.Errorf("%w: %s %q has shape %s: dimension %d is dynamic; only the batch dimension (first) may be", ErrBadModel, kind(i), t.Name, FormatShape(t.Shape), d)
			}
			return false, "", fmt.Errorf("%w: %s %q has shape %s: dimension %d is dynamic, and the model has no batch dimension (%s), so every dimension must be fixed", ErrBadModel, kind(i), t.Name, FormatShape(t.Shape), d, why)
		}
	}
	if !batched {
		for i := range ins {
			ins[i].unbatched = true
		}
		for i := range outs {
			outs[i].unbatched = true
		}
	}
	return batched, why, nil
}

// FormatShape writes a shape as error texts show it: [N,3,224,224], N
// for a dynamic dimension.
func FormatShape(s []int64) string {
	b := []byte{'['}
	for i, d := range s {
		if i > 0 {
			b = append(b, ',')
		}
		if d < 0 {
			b = append(b, 'N')
		} else {
			b = strconv.AppendInt(b, d, 10)
		}
	}
	return string(append(b, ']'))
}

package gpu

import (
	"fmt"
	"slices"

	ort "github.com/yalue/onnxruntime_go"
)

// TensorInfo describes one model input or output as the model file declares
// it. Datatype uses the KServe v2 names (FP32, FP16, UINT8, INT64, ...).
// Shape has -1 for a symbolic dimension; Shape[0] is the batch dimension.
type TensorInfo struct {
	Name     string
	Datatype string
	Shape    []int64
	elemType ort.TensorElementDataType
}

// ElemSize is the size of one element in bytes.
func (t TensorInfo) ElemSize() int { return elemSizes[t.Datatype] }

// RowShape is the shape of one batch row: Shape without the batch dimension.
func (t TensorInfo) RowShape() []int64 { return slices.Clone(t.Shape[1:]) }

// RowElems is the number of elements in one batch row.
func (t TensorInfo) RowElems() int {
	n := 1
	for _, d := range t.Shape[1:] {
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
// can be served in batches: a tensor type we support, a batch dimension
// first, and every other dimension fixed.
func tensorInfo(kind string, io ort.InputOutputInfo) (TensorInfo, error) {
	if io.OrtValueType != ort.ONNXTypeTensor {
		return TensorInfo{}, fmt.Errorf("%w: %s %q is a %s, not a tensor", ErrBadModel, kind, io.Name, io.OrtValueType)
	}
	dt, ok := datatypeNames[io.DataType]
	if !ok {
		return TensorInfo{}, fmt.Errorf("%w: %s %q has element type %s, which inferd does not serve", ErrBadModel, kind, io.Name, io.DataType)
	}
	shape := []int64(io.Dimensions)
	if len(shape) == 0 {
		return TensorInfo{}, fmt.Errorf("%w: %s %q is a scalar; want a batch dimension first", ErrBadModel, kind, io.Name)
	}
	for i, d := range shape[1:] {
		if d <= 0 {
			return TensorInfo{}, fmt.Errorf("%w: %s %q has shape %v: dimension %d is symbolic; only the batch dimension (first) may be", ErrBadModel, kind, io.Name, shape, i+1)
		}
	}
	if shape[0] <= 0 {
		shape[0] = -1
	}
	return TensorInfo{Name: io.Name, Datatype: dt, Shape: slices.Clone(shape), elemType: io.DataType}, nil
}

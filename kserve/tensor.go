package kserve

import (
	"fmt"
	"math"
	"strconv"
)

// Tensor is one named input or output tensor.
type Tensor struct {
	// Name is the tensor's name in the model.
	Name string
	// Datatype is one of the constants BOOL ... FP64.
	Datatype string
	// Shape holds the dimensions; a scalar has none.
	Shape []int64
	// Data holds the elements, row-major, little-endian, each
	// DatatypeSize(Datatype) bytes (FP16 as IEEE half bits, BOOL as one
	// byte 0 or 1): len(Data) == elements * size. In a parsed request, the
	// Data of a binary tensor is the body's own bytes (no copy): valid
	// while the body is, and not to be written.
	Data []byte

	buf []byte // the storage a parse converts JSON data into, reused
}

// Elements returns the number of elements the shape describes, or an
// error for a negative dimension or a product beyond int64.
func (t *Tensor) Elements() (int64, error) {
	return shapeElements(t.Shape)
}

func shapeElements(shape []int64) (int64, error) {
	n := int64(1)
	for i, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("shape %s: dimension %d is %d, expected >= 0", formatShape(shape), i, d)
		}
		if d != 0 && n > math.MaxInt64/d {
			return 0, fmt.Errorf("shape %s has more elements than fit in int64", formatShape(shape))
		}
		n *= d
	}
	return n, nil
}

// formatShape writes a shape the way JSON does: [1,3,224,224].
func formatShape(shape []int64) string {
	return string(appendShape(nil, shape))
}

func appendShape(b []byte, shape []int64) []byte {
	b = append(b, '[')
	for i, d := range shape {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, d, 10)
	}
	return append(b, ']')
}

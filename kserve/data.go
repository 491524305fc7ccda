package kserve

import (
	"encoding/binary"
	"errors"
	"math"
	"strconv"
	"strings"

	"github.com/valyala/fastjson"
)

// parseData converts a JSON "data" array, flat or nested as the shape,
// into t.Data.
func (st *state) parseData(t *Tensor, data *fastjson.Value, label inputLabel, elems int64) error {
	arr, err := data.Array()
	if err != nil {
		return badRequest(`%s "data" must be an array of numbers (flat, or nested as the shape), got %s`, label, data.Type())
	}
	nested := len(arr) > 0 && arr[0].Type() == fastjson.TypeArray
	if !nested {
		if int64(len(arr)) != elems {
			return badRequest("%s: data has %d elements, shape %s needs %d", label, len(arr), formatShape(t.Shape), elems)
		}
	} else if err := checkNesting(data, t.Shape); err != nil {
		return badRequest("%s: data nesting does not match shape %s: %s", label, formatShape(t.Shape), err)
	}
	// Only now is the size known to match what was sent, so allocating it
	// is bounded by the request body.
	size, _ := DatatypeSize(t.Datatype)
	n := int(elems) * size
	if cap(t.Data) < n {
		t.Data = make([]byte, n)
	}
	t.Data = t.Data[:n]
	c := converter{st: st, dt: t.Datatype, out: t.Data}
	if nested {
		err = c.nested(data, len(t.Shape))
	} else {
		err = c.values(arr)
	}
	if err != nil {
		return badRequest("%s: %s", label, err)
	}
	return nil
}

// checkNesting verifies that nested data has exactly the shape's
// structure: len(shape) levels of arrays with the shape's lengths.
func checkNesting(data *fastjson.Value, shape []int64) error {
	depth := 0
	for v := data; v.Type() == fastjson.TypeArray; depth++ {
		a, _ := v.Array()
		if len(a) == 0 {
			depth++
			break
		}
		v = a[0]
	}
	if depth != len(shape) {
		return errorString("data is nested " + strconv.Itoa(depth) + " deep, the shape has " + strconv.Itoa(len(shape)) + " dimensions")
	}
	return walkNesting(data, shape, 0, make([]int, 0, len(shape)))
}

// walkNesting checks one level of nested data; path is the index of v.
func walkNesting(v *fastjson.Value, shape []int64, level int, path []int) error {
	a, err := v.Array()
	if err != nil {
		return errorString("data" + formatPath(path) + " is " + article(v.Type()) + ", expected an array of " + strconv.FormatInt(shape[level], 10))
	}
	if int64(len(a)) != shape[level] {
		return errorString("data" + formatPath(path) + " has " + strconv.Itoa(len(a)) + " elements, expected " + strconv.FormatInt(shape[level], 10))
	}
	if level == len(shape)-1 {
		return nil // leaves are checked as they are converted
	}
	for i, e := range a {
		if err := walkNesting(e, shape, level+1, append(path, i)); err != nil {
			return err
		}
	}
	return nil
}

func formatPath(path []int) string {
	var b strings.Builder
	for _, i := range path {
		b.WriteByte('[')
		b.WriteString(strconv.Itoa(i))
		b.WriteByte(']')
	}
	return b.String()
}

func article(t fastjson.Type) string {
	switch t {
	case fastjson.TypeArray, fastjson.TypeObject:
		return "an " + t.String()
	case fastjson.TypeNull:
		return "null"
	case fastjson.TypeTrue, fastjson.TypeFalse:
		return t.String()
	}
	return "a " + t.String()
}

// converter writes JSON values into a tensor's bytes.
type converter struct {
	st  *state
	dt  string
	out []byte
	n   int // elements written so far
}

// nested converts the leaf arrays of data (depth levels deep) in order.
func (c *converter) nested(v *fastjson.Value, depth int) error {
	a, _ := v.Array() // structure verified by checkNesting
	if depth == 1 {
		return c.values(a)
	}
	for _, e := range a {
		if err := c.nested(e, depth-1); err != nil {
			return err
		}
	}
	return nil
}

var (
	errNotNumber  = errors.New("not a number")
	errBadNumber  = errors.New("not a valid JSON number")
	errNotInteger = errors.New("not an integer")
	errRange      = errors.New("out of range")
)

// number returns the text of JSON number v in c.st.num.
func (c *converter) number(v *fastjson.Value) ([]byte, error) {
	if v.Type() != fastjson.TypeNumber {
		return nil, errNotNumber
	}
	b := v.MarshalTo(c.st.num[:0])
	c.st.num = b
	if !isJSONNumber(b) {
		return b, errBadNumber
	}
	return b, nil
}

// values converts one flat array of scalars.
func (c *converter) values(arr []*fastjson.Value) error {
	base := c.n
	c.n += len(arr)
	switch c.dt {
	case FP32:
		out := c.out[4*base:]
		for i, v := range arr {
			if v.Type() != fastjson.TypeNumber {
				return c.elemErr(base+i, v, errNotNumber)
			}
			c.st.num = v.MarshalTo(c.st.num[:0])
			f, err := parseFP32(c.st.num) // validates the grammar too
			if err != nil {
				return c.elemErr(base+i, v, err)
			}
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(f))
		}
	case FP64:
		out := c.out[8*base:]
		for i, v := range arr {
			b, err := c.number(v)
			if err != nil {
				return c.elemErr(base+i, v, err)
			}
			f, err := strconv.ParseFloat(string(b), 64)
			if err != nil {
				return c.elemErr(base+i, v, errRange)
			}
			binary.LittleEndian.PutUint64(out[8*i:], math.Float64bits(f))
		}
	case FP16:
		out := c.out[2*base:]
		for i, v := range arr {
			b, err := c.number(v)
			if err != nil {
				return c.elemErr(base+i, v, err)
			}
			f, err := strconv.ParseFloat(string(b), 64)
			if err != nil {
				return c.elemErr(base+i, v, errRange)
			}
			h, ok := Float64ToHalf(f)
			if !ok {
				return c.elemErr(base+i, v, errRange)
			}
			binary.LittleEndian.PutUint16(out[2*i:], h)
		}
	case BOOL:
		out := c.out[base:]
		for i, v := range arr {
			switch v.Type() {
			case fastjson.TypeTrue:
				out[i] = 1
			case fastjson.TypeFalse:
				out[i] = 0
			default:
				// 0 and 1 are accepted too.
				b, err := c.number(v)
				if err != nil {
					return c.elemErr(base+i, v, err)
				}
				n, err := parseUnsigned(b, 1)
				if err != nil {
					return c.elemErr(base+i, v, err)
				}
				out[i] = byte(n)
			}
		}
	case INT8, INT16, INT32, INT64:
		lo, hi := intRange(c.dt)
		for i, v := range arr {
			b, err := c.number(v)
			if err != nil {
				return c.elemErr(base+i, v, err)
			}
			n, err := parseSigned(b, lo, hi)
			if err != nil {
				return c.elemErr(base+i, v, err)
			}
			putInt(c.out, c.dt, base+i, uint64(n))
		}
	case UINT8, UINT16, UINT32, UINT64:
		_, hi := intRange(c.dt)
		max := uint64(hi)
		if c.dt == UINT64 {
			max = math.MaxUint64
		}
		for i, v := range arr {
			b, err := c.number(v)
			if err != nil {
				return c.elemErr(base+i, v, err)
			}
			n, err := parseUnsigned(b, max)
			if err != nil {
				return c.elemErr(base+i, v, err)
			}
			putInt(c.out, c.dt, base+i, n)
		}
	}
	return nil
}

// intRange returns the bounds of an integer datatype (UINT64's upper
// bound is handled by the caller).
func intRange(dt string) (int64, int64) {
	switch dt {
	case INT8:
		return math.MinInt8, math.MaxInt8
	case INT16:
		return math.MinInt16, math.MaxInt16
	case INT32:
		return math.MinInt32, math.MaxInt32
	case INT64:
		return math.MinInt64, math.MaxInt64
	case UINT8:
		return 0, math.MaxUint8
	case UINT16:
		return 0, math.MaxUint16
	case UINT32:
		return 0, math.MaxUint32
	}
	return 0, math.MaxInt64
}

// putInt stores element i of an integer datatype, little-endian,
// truncating v to the element size (the value was range-checked).
func putInt(out []byte, dt string, i int, v uint64) {
	switch dt {
	case INT8, UINT8:
		out[i] = byte(v)
	case INT16, UINT16:
		binary.LittleEndian.PutUint16(out[2*i:], uint16(v))
	case INT32, UINT32:
		binary.LittleEndian.PutUint32(out[4*i:], uint32(v))
	default:
		binary.LittleEndian.PutUint64(out[8*i:], v)
	}
}

// elemErr describes a bad element: which one (row-major index), what it
// was, and what the datatype needs.
func (c *converter) elemErr(i int, v *fastjson.Value, err error) error {
	var b strings.Builder
	b.WriteString("data element ")
	b.WriteString(strconv.Itoa(i))
	b.WriteString(" is ")
	if errors.Is(err, errNotNumber) {
		b.WriteString(article(v.Type()))
		if c.dt == BOOL {
			b.WriteString(", expected true, false, 0 or 1 for BOOL")
		} else {
			b.WriteString(", expected a number for ")
			b.WriteString(c.dt)
		}
		return errorString(b.String())
	}
	text := string(c.st.num)
	if len(text) > 40 {
		text = text[:40] + "..."
	}
	b.WriteString(text)
	switch err {
	case errBadNumber:
		b.WriteString(", not a valid JSON number")
	case errNotInteger:
		b.WriteString(", expected an integer for ")
		b.WriteString(c.dt)
	case errRange:
		b.WriteString(", out of range for ")
		b.WriteString(c.dt)
		switch c.dt {
		case FP16:
			b.WriteString(" (largest magnitude 65504)")
		case FP32, FP64:
		case BOOL:
			b.WriteString(" (expected true, false, 0 or 1)")
		case UINT64:
			b.WriteString(" [0, 18446744073709551615]")
		default:
			lo, hi := intRange(c.dt)
			b.WriteString(" [" + strconv.FormatInt(lo, 10) + ", " + strconv.FormatInt(hi, 10) + "]")
		}
	}
	return errorString(b.String())
}

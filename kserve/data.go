package kserve

import (
	"encoding/binary"
	"errors"
	"math"
	"strconv"
	"strings"
)

// parseData converts the "data" value at b[d:end], flat or nested as the
// shape, into t.Data. elems is the shape's element count.
//
// Memory is bounded before it is allocated: every element takes at
// least one byte and all but the last a separator, so a shape that needs
// more elements than the array's bytes can hold is refused first, and
// the buffer (allocated once, at its final size) is at most 4 bytes per
// byte of the array (FP64 from "0,"). The count is then checked as the
// elements are converted: one too many fails there, too few at the end.
func parseData(t *Tensor, b []byte, d, end int, label inputLabel, elems int64) error {
	if b[d] != '[' {
		return badRequest(`%s "data" must be an array of numbers (flat, or nested as the shape), got %s`, label, kindAt(b, d))
	}
	nested := b[skipWS(b, d+1)] == '['
	if nested {
		if depth := nestingDepth(b, d); depth != len(t.Shape) {
			return badRequest("%s: data nesting does not match shape %s: data is nested %d deep, the shape has %d dimensions", label, formatShape(t.Shape), depth, len(t.Shape))
		}
	}
	if most := int64(end-d-1) / 2; elems > most {
		return badRequest("%s: data array is too short for shape %s: its %d bytes hold at most %d elements, the shape needs %d", label, formatShape(t.Shape), end-d, most, elems)
	}
	size, _ := DatatypeSize(t.Datatype)
	n := int(elems) * size
	if cap(t.buf) < n {
		t.buf = make([]byte, n)
	}
	t.Data = t.buf[:n]
	var c converter
	c.init(b, t)
	var err error
	if nested {
		_, err = c.nested(d, 0)
	} else {
		err = c.flat(d, int(elems))
	}
	if err != nil {
		return badRequest("%s: %s", label, err)
	}
	return nil
}

// nestingDepth follows the first elements of the valid array at b[d]
// down and counts the arrays on the way (an empty one counts).
func nestingDepth(b []byte, d int) int {
	depth := 0
	for p := d; b[p] == '['; {
		depth++
		if p = skipWS(b, p+1); b[p] == ']' {
			break
		}
	}
	return depth
}

// elemKind is how a datatype's elements are read.
type elemKind uint8

const (
	kindFP32 elemKind = iota
	kindFP64
	kindFP16
	kindBool
	kindSigned
	kindUnsigned
)

// converter writes the elements of a valid JSON data array into a
// tensor's bytes.
type converter struct {
	b     []byte
	dt    string
	kind  elemKind
	size  int
	lo    int64  // kindSigned range
	hi    int64  //
	max   uint64 // kindUnsigned upper bound
	out   []byte
	n     int // elements written so far
	shape []int64
	path  [maxRank]int // index of the array being walked, per level
}

func (c *converter) init(b []byte, t *Tensor) {
	c.b, c.dt, c.out, c.shape = b, t.Datatype, t.Data, t.Shape
	c.size, _ = DatatypeSize(t.Datatype)
	switch t.Datatype {
	case FP32:
		c.kind = kindFP32
	case FP64:
		c.kind = kindFP64
	case FP16:
		c.kind = kindFP16
	case BOOL:
		c.kind = kindBool
	case INT8, INT16, INT32, INT64:
		c.kind = kindSigned
		c.lo, c.hi = intRange(t.Datatype)
	default:
		c.kind = kindUnsigned
		_, hi := intRange(t.Datatype)
		c.max = uint64(hi)
		if t.Datatype == UINT64 {
			c.max = math.MaxUint64
		}
	}
}

// flat converts the flat array at b[d], which must hold limit elements.
func (c *converter) flat(d, limit int) error {
	b := c.b
	p := skipWS(b, d+1)
	if b[p] != ']' {
		for {
			if c.n == limit {
				return c.countErr(c.n+countRest(b, p), limit)
			}
			var err error
			if p, err = c.elem(p); err != nil {
				return err
			}
			if b[p] != ',' {
				if p = skipWS(b, p); b[p] != ',' {
					break
				}
			}
			p = skipWS(b, p+1)
		}
	}
	if c.n != limit {
		return c.countErr(c.n, limit)
	}
	return nil
}

func (c *converter) countErr(got, want int) error {
	return errorString("data has " + strconv.Itoa(got) + " elements, shape " + formatShape(c.shape) + " needs " + strconv.Itoa(want))
}

// nested converts the array at b[p], level levels down in data nested
// as the shape, checking each array's length against its dimension as it
// goes; it returns the offset after the array.
func (c *converter) nested(p, level int) (int, error) {
	b := c.b
	want := c.shape[level]
	last := level == len(c.shape)-1
	var n int64
	if p = skipWS(b, p+1); b[p] != ']' {
		for {
			if n == want {
				return p, c.nestErr(level, " has "+strconv.FormatInt(n+int64(countRest(b, p)), 10)+" elements, expected "+strconv.FormatInt(want, 10))
			}
			var err error
			switch {
			case last:
				p, err = c.elem(p)
			case b[p] != '[':
				c.path[level] = int(n)
				return p, c.nestErr(level+1, " is "+article(kindAt(b, p))+", expected an array of "+strconv.FormatInt(c.shape[level+1], 10))
			default:
				c.path[level] = int(n)
				p, err = c.nested(p, level+1)
			}
			if err != nil {
				return p, err
			}
			n++
			if p = skipWS(b, p); b[p] != ',' {
				break
			}
			p = skipWS(b, p+1)
		}
	}
	if n != want {
		return p, c.nestErr(level, " has "+strconv.FormatInt(n, 10)+" elements, expected "+strconv.FormatInt(want, 10))
	}
	return p + 1, nil
}

// nestErr describes the array at c.path[:depth] not matching the shape.
func (c *converter) nestErr(depth int, what string) error {
	var s strings.Builder
	s.WriteString("data nesting does not match shape ")
	s.WriteString(formatShape(c.shape))
	s.WriteString(": data")
	for _, i := range c.path[:depth] {
		s.WriteByte('[')
		s.WriteString(strconv.Itoa(i))
		s.WriteByte(']')
	}
	s.WriteString(what)
	return errorString(s.String())
}

var (
	errBadNumber  = errors.New("not a valid JSON number")
	errNotInteger = errors.New("not an integer")
	errRange      = errors.New("out of range")
)

// elem converts the element at b[p] into element c.n and returns the
// offset after it.
func (c *converter) elem(p int) (int, error) {
	b := c.b
	i := c.n
	if c.kind == kindBool {
		switch b[p] {
		case 't':
			c.out[i] = 1
			c.n++
			return p + 4, nil
		case 'f':
			c.out[i] = 0
			c.n++
			return p + 5, nil
		}
	}
	if c.kind == kindFP32 {
		f, end, err := fp32At(b, p) // validates the grammar too
		if err != nil {
			return p, c.badElem(p, err)
		}
		binary.LittleEndian.PutUint32(c.out[4*i:], math.Float32bits(f))
		c.n++
		return end, nil
	}
	end := numberEnd(b, p)
	if end == p {
		return p, c.notNumber(i, kindAt(b, p))
	}
	tok := b[p:end]
	if !isJSONNumber(tok) {
		return p, c.elemErr(i, tok, errBadNumber)
	}
	switch c.kind {
	case kindFP64:
		f, err := strconv.ParseFloat(string(tok), 64)
		if err != nil {
			return p, c.elemErr(i, tok, errRange)
		}
		binary.LittleEndian.PutUint64(c.out[8*i:], math.Float64bits(f))
	case kindFP16:
		f, err := strconv.ParseFloat(string(tok), 64)
		if err != nil {
			return p, c.elemErr(i, tok, errRange)
		}
		h, ok := Float64ToHalf(f)
		if !ok {
			return p, c.elemErr(i, tok, errRange)
		}
		binary.LittleEndian.PutUint16(c.out[2*i:], h)
	case kindBool: // 0 and 1 are accepted too
		v, err := parseUnsigned(tok, 1)
		if err != nil {
			return p, c.elemErr(i, tok, err)
		}
		c.out[i] = byte(v)
	case kindSigned:
		v, err := parseSigned(tok, c.lo, c.hi)
		if err != nil {
			return p, c.elemErr(i, tok, err)
		}
		putInt(c.out, c.size, i, uint64(v))
	case kindUnsigned:
		v, err := parseUnsigned(tok, c.max)
		if err != nil {
			return p, c.elemErr(i, tok, err)
		}
		putInt(c.out, c.size, i, v)
	}
	c.n++
	return end, nil
}

// badElem describes element c.n at b[p] that fp32At refused.
func (c *converter) badElem(p int, err error) error {
	end := numberEnd(c.b, p)
	if end == p {
		return c.notNumber(c.n, kindAt(c.b, p))
	}
	return c.elemErr(c.n, c.b[p:end], err)
}

// notNumber describes element i, of the given kind, that is not a
// number.
func (c *converter) notNumber(i int, kind string) error {
	s := "data element " + strconv.Itoa(i) + " is " + article(kind)
	if c.kind == kindBool {
		return errorString(s + ", expected true, false, 0 or 1 for BOOL")
	}
	return errorString(s + ", expected a number for " + c.dt)
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

// putInt stores element i of an integer datatype of size bytes,
// little-endian, truncating v to the element size (the value was
// range-checked).
func putInt(out []byte, size, i int, v uint64) {
	switch size {
	case 1:
		out[i] = byte(v)
	case 2:
		binary.LittleEndian.PutUint16(out[2*i:], uint16(v))
	case 4:
		binary.LittleEndian.PutUint32(out[4*i:], uint32(v))
	default:
		binary.LittleEndian.PutUint64(out[8*i:], v)
	}
}

// elemErr describes a bad number: which element (row-major index), its
// text, and what the datatype needs.
func (c *converter) elemErr(i int, tok []byte, err error) error {
	var b strings.Builder
	b.WriteString("data element ")
	b.WriteString(strconv.Itoa(i))
	b.WriteString(" is ")
	b.WriteString(clip(tok, 40))
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

package kserve

import (
	"math"
	"strings"
)

// Tensor datatypes of the Open Inference Protocol that this package
// handles. BYTES (variable-length strings) is not supported in requests;
// responses encode it (see AppendBytesElement).
const (
	BOOL   = "BOOL"
	UINT8  = "UINT8"
	UINT16 = "UINT16"
	UINT32 = "UINT32"
	UINT64 = "UINT64"
	INT8   = "INT8"
	INT16  = "INT16"
	INT32  = "INT32"
	INT64  = "INT64"
	FP16   = "FP16"
	FP32   = "FP32"
	FP64   = "FP64"
	BYTES  = "BYTES"
)

var supportedDatatypes = []string{BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64}

// supportedList is for error messages.
var supportedList = strings.Join(supportedDatatypes, ", ")

// DatatypeSize returns the size in bytes of one element of datatype dt,
// and false for BYTES and unknown names. Names are case-sensitive, as in
// the protocol.
func DatatypeSize(dt string) (int, bool) {
	switch dt {
	case BOOL, UINT8, INT8:
		return 1, true
	case UINT16, INT16, FP16:
		return 2, true
	case UINT32, INT32, FP32:
		return 4, true
	case UINT64, INT64, FP64:
		return 8, true
	}
	return 0, false
}

// canonicalDatatype returns the constant for b without allocating, or ""
// when b is not a supported datatype.
func canonicalDatatype(b []byte) string {
	switch string(b) {
	case BOOL:
		return BOOL
	case UINT8:
		return UINT8
	case UINT16:
		return UINT16
	case UINT32:
		return UINT32
	case UINT64:
		return UINT64
	case INT8:
		return INT8
	case INT16:
		return INT16
	case INT32:
		return INT32
	case INT64:
		return INT64
	case FP16:
		return FP16
	case FP32:
		return FP32
	case FP64:
		return FP64
	}
	return ""
}

// Float64ToHalf converts f to IEEE 754 binary16 bits, rounding to nearest
// even. ok is false when f is NaN or its magnitude rounds beyond the
// largest half (65504), where the result would be infinite.
func Float64ToHalf(f float64) (h uint16, ok bool) {
	b := math.Float64bits(f)
	sign := uint16(b>>48) & 0x8000
	exp := int(b>>52&0x7ff) - 1023
	mant := b & (1<<52 - 1)
	switch {
	case exp == 1024: // Inf or NaN
		if mant != 0 {
			return sign | 0x7e00, false
		}
		return sign | 0x7c00, false
	case exp > 15:
		return sign | 0x7c00, false
	case exp >= -14: // normal half
		m := mant >> 42
		rem := mant & (1<<42 - 1)
		if rem > 1<<41 || rem == 1<<41 && m&1 == 1 {
			m++ // may carry into the exponent, which is right
		}
		h = sign | uint16(exp+15)<<10 + uint16(m)
		if h&0x7fff >= 0x7c00 {
			return sign | 0x7c00, false
		}
		return h, true
	case exp == -1023 && mant == 0:
		return sign, true
	default: // subnormal half, or rounds to zero
		full := mant | 1<<52    // f64 subnormals are far below half's range
		shift := uint(28 - exp) // value in units of 2^-24 is full >> shift
		if shift > 63 {
			return sign, true
		}
		m := full >> shift
		rem := full & (1<<shift - 1)
		halfway := uint64(1) << (shift - 1)
		if rem > halfway || rem == halfway && m&1 == 1 {
			m++
		}
		return sign | uint16(m), true
	}
}

// HalfToFloat32 converts IEEE 754 binary16 bits to a float32 (exactly:
// every half is a float32).
func HalfToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp != 0:
		return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
	case mant == 0:
		return math.Float32frombits(sign)
	}
	// Subnormal: normalise.
	e := uint32(113)
	for mant&0x400 == 0 {
		mant <<= 1
		e--
	}
	return math.Float32frombits(sign | e<<23 | (mant&0x3ff)<<13)
}

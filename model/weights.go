package model

import (
	"encoding/binary"
	"hash/fnv"
	"math"
	"math/rand/v2"
)

// biasStd is the standard deviation of every bias (folded batch-norm shift):
// small next to activations of order one.
const biasStd = 0.01

func sqrt(x float64) float64 { return math.Sqrt(x) }

// normals returns n samples of N(0, std²) from a PCG stream keyed by the
// model seed and the tensor name, so each tensor's values depend only on
// (seed, name): the same weights appear in every variant of a model, and the
// order in which tensors are generated does not matter.
func normals(seed uint64, name string, n int, std float64) []float32 {
	h := fnv.New64a()
	h.Write([]byte(name))
	r := rand.New(rand.NewPCG(seed, h.Sum64()))
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(r.NormFloat64() * std)
	}
	return out
}

// centreRows subtracts from each consecutive run of row values its mean.
func centreRows(vals []float32, row int) {
	for start := 0; start+row <= len(vals); start += row {
		r := vals[start : start+row]
		var sum float64
		for _, v := range r {
			sum += float64(v)
		}
		mean := float32(sum / float64(row))
		for i := range r {
			r[i] -= mean
		}
	}
}

// encodeFloats writes vals as little-endian float32 or float16 into dst.
func encodeFloats(dst []byte, vals []float32, dtype dataType) {
	switch dtype {
	case typeFloat:
		for i, v := range vals {
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
		}
	case typeFloat16:
		for i, v := range vals {
			binary.LittleEndian.PutUint16(dst[2*i:], float16Bits(v))
		}
	default:
		panic("model: encodeFloats: unsupported data type")
	}
}

// float16Bits converts f to IEEE 754 binary16, rounding to nearest even;
// values beyond the float16 range become ±Inf, NaN stays NaN.
func float16Bits(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		// Subnormal half (or zero): value = m * 2^-24.
		if e < -10 {
			return sign
		}
		m := mant | 0x800000
		shift := uint(14 - e)
		h := m >> shift
		rem := m & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || (rem == half && h&1 == 1) {
			h++
		}
		return sign | uint16(h)
	}
	h := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && h&1 == 1) {
		h++ // a carry into the exponent is still correctly rounded
	}
	return sign | uint16(h)
}

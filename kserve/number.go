package kserve

import (
	"encoding/binary"
	"math"
	"strconv"
)

// float64pow10 holds the powers of ten that float64 represents exactly.
var float64pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// parseFP32 converts JSON number text to the nearest float32 (ties to
// even), exactly like strconv.ParseFloat(s, 32), but faster for the
// numbers clients send: it validates the JSON grammar and reads the digits
// in one pass, and most values take a fast path.
//
// The fast path: with at most 19 significant digits m and a decimal
// exponent |e| <= 22, f = float64(m) * 10^e (or / 10^-e) is within two
// float64 ulps of the exact value (10^e is exact; float64(m) and the
// product each round once). Rounding f to float32 then gives the correctly
// rounded float32 unless f lies within a few float64 ulps of a point
// halfway between two float32s: only there could the two roundings differ.
// Those values, and everything outside the fast path's range, go to
// strconv.
//
// err is errBadNumber when s is not a JSON number, errRange when its
// value is beyond float32's range.
func parseFP32(s []byte) (f float32, err error) {
	f, end, err := fp32At(s, 0)
	if err == nil && end != len(s) {
		return 0, errBadNumber
	}
	return f, err
}

// fp32At is parseFP32 for the number token at b[i], read in one pass
// (the data loop's path): it returns the value and the token's end. The
// token must be a whole JSON number: errBadNumber when the grammar fails
// or more number characters follow what it matched ("01", "1.5.5").
func fp32At(b []byte, i int) (f float32, end int, err error) {
	mant, exp, neg, many, end, valid := scanNumber(b, i)
	if !valid || end < len(b) && byteClass[b[end]]&classNum != 0 {
		return 0, i, errBadNumber
	}
	if !many && exp >= -22 && exp <= 22 {
		if mant == 0 {
			if neg {
				return float32(math.Copysign(0, -1)), end, nil
			}
			return 0, end, nil
		}
		x := float64(mant)
		if exp < 0 {
			x /= float64pow10[-exp]
		} else {
			x *= float64pow10[exp]
		}
		// Within float32's normal range, the 29 low mantissa bits of x are
		// the position between two float32s; 1<<28 is the midpoint.
		if x >= 0x1p-126 && x < math.MaxFloat32 {
			low := math.Float64bits(x) & (1<<29 - 1)
			const margin = 8 // float64 ulps: four times the error bound
			if low < 1<<28-margin || low > 1<<28+margin {
				if neg {
					x = -x
				}
				return float32(x), end, nil
			}
		}
	}
	v, perr := strconv.ParseFloat(string(b[i:end]), 32)
	if perr != nil {
		return 0, i, errRange
	}
	return float32(v), end, nil
}

// scanNumber reads the longest match of JSON's number grammar,
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, at s[i:], and returns
// its first 19 significant digits as mant, the decimal exponent that goes
// with them and where the match ends; many is set when digits beyond the
// 19th were dropped, ok is false when nothing matches.
func scanNumber(s []byte, i int) (mant uint64, exp int, neg, many bool, end int, ok bool) {
	n := len(s)
	if i < n && s[i] == '-' {
		neg = true
		i++
	}
	nd := 0 // significant digits kept in mant
	switch {
	case i < n && s[i] == '0':
		i++
	case i < n && s[i] >= '1' && s[i] <= '9':
		for ; i < n && s[i] >= '0' && s[i] <= '9'; i++ {
			if nd < 19 {
				mant = mant*10 + uint64(s[i]-'0')
				nd++
			} else {
				exp++
				if s[i] != '0' {
					many = true
				}
			}
		}
	default:
		return 0, 0, false, false, i, false
	}
	if i < n && s[i] == '.' {
		i++
		start := i
		if mant == 0 { // no significant digit yet (so nd == 0)
			for i < n && s[i] == '0' {
				i++
				exp--
			}
			if i < n && s[i] >= '1' && s[i] <= '9' {
				mant, nd = uint64(s[i]-'0'), 1
				i++
				exp--
			}
		}
		// Then eight digits at a time while they fit: a float32 printed
		// as a Python float has 16 or 17.
		for mant != 0 && nd <= 19-8 && i+8 <= n {
			x := binary.LittleEndian.Uint64(s[i:])
			if !eightDigits(x) {
				break
			}
			mant = mant*100_000_000 + parseEightDigits(x)
			nd += 8
			exp -= 8
			i += 8
		}
		for ; i < n && s[i] >= '0' && s[i] <= '9'; i++ {
			if nd < 19 {
				if mant != 0 || s[i] != '0' {
					nd++
				}
				mant = mant*10 + uint64(s[i]-'0')
				exp--
			} else if s[i] != '0' {
				many = true
			}
		}
		if i == start {
			return 0, 0, false, false, i, false
		}
	}
	if i < n && (s[i] == 'e' || s[i] == 'E') {
		i++
		eneg := false
		if i < n && (s[i] == '+' || s[i] == '-') {
			eneg = s[i] == '-'
			i++
		}
		start := i
		e := 0
		for ; i < n && s[i] >= '0' && s[i] <= '9'; i++ {
			if e < 100000 {
				e = e*10 + int(s[i]-'0')
			}
		}
		if i == start {
			return 0, 0, false, false, i, false
		}
		if eneg {
			e = -e
		}
		exp += e
	}
	return mant, exp, neg, many, i, true
}

// eightDigits reports whether the 8 bytes of x (little-endian) are all
// ASCII digits (simdjson's is_made_of_eight_digits_fast).
func eightDigits(x uint64) bool {
	return x&0xF0F0F0F0F0F0F0F0|(x+0x0606060606060606)&0xF0F0F0F0F0F0F0F0>>4 == 0x3333333333333333
}

// parseEightDigits returns the value of 8 ASCII digits loaded
// little-endian into x, the first digit in the low byte (simdjson's
// parse_eight_digits_unrolled).
func parseEightDigits(x uint64) uint64 {
	x = (x & 0x0F0F0F0F0F0F0F0F) * 2561 >> 8
	x = (x & 0x00FF00FF00FF00FF) * 6553601 >> 16
	return (x & 0x0000FFFF0000FFFF) * 42949672960001 >> 32
}

// isJSONNumber reports whether b is a number by JSON's grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? (fastjson's tokenizer
// is looser: it lets through "01", "+1", "1.", "NaN", "inf").
func isJSONNumber(b []byte) bool {
	i, n := 0, len(b)
	if i < n && b[i] == '-' {
		i++
	}
	switch {
	case i < n && b[i] == '0':
		i++
	case i < n && b[i] >= '1' && b[i] <= '9':
		for i < n && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < n && b[i] == '.' {
		i++
		if i >= n || b[i] < '0' || b[i] > '9' {
			return false
		}
		for i < n && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	if i < n && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < n && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= n || b[i] < '0' || b[i] > '9' {
			return false
		}
		for i < n && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	return i == n
}

// parseSigned parses JSON number text (already validated) as an integer
// in [lo, hi]. Integral values written with a fraction or exponent
// ("3.0", "1e3") are accepted.
func parseSigned(b []byte, lo, hi int64) (int64, error) {
	if plainInteger(b) {
		n, err := strconv.ParseInt(string(b), 10, 64)
		if err != nil || n < lo || n > hi {
			return 0, errRange
		}
		return n, nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return 0, errRange
	}
	if f != math.Trunc(f) {
		return 0, errNotInteger
	}
	// 2^63 is the first float64 beyond int64; below it int64(f) is exact.
	if f < float64(lo) || f >= 9223372036854775808.0 || int64(f) > hi {
		return 0, errRange
	}
	return int64(f), nil
}

// parseUnsigned is parseSigned for [0, hi].
func parseUnsigned(b []byte, hi uint64) (uint64, error) {
	if plainInteger(b) {
		if b[0] == '-' {
			if string(b) == "-0" {
				return 0, nil
			}
			return 0, errRange
		}
		n, err := strconv.ParseUint(string(b), 10, 64)
		if err != nil || n > hi {
			return 0, errRange
		}
		return n, nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return 0, errRange
	}
	if f != math.Trunc(f) {
		return 0, errNotInteger
	}
	if f < 0 || f >= 18446744073709551616.0 || uint64(f) > hi {
		return 0, errRange
	}
	return uint64(f), nil
}

// plainInteger reports whether validated JSON number text has no
// fraction or exponent.
func plainInteger(b []byte) bool {
	for _, c := range b {
		if c == '.' || c == 'e' || c == 'E' {
			return false
		}
	}
	return true
}

package kserve

import (
	"encoding/binary"
	"errors"
	"math"
	"math/big"
	"math/rand/v2"
	"strconv"
	"testing"
)

// checkFP32 compares parseFP32 with strconv.ParseFloat(s, 32), the
// reference for correct rounding.
func checkFP32(t *testing.T, s string) {
	t.Helper()
	got, err := parseFP32([]byte(s))
	want, werr := strconv.ParseFloat(s, 32)
	switch {
	case errors.Is(err, errBadNumber):
		if werr == nil && isJSONNumber([]byte(s)) {
			t.Fatalf("parseFP32(%q) rejected a number", s)
		}
	case werr != nil:
		if err == nil {
			t.Fatalf("parseFP32(%q) = %v, strconv: %v", s, got, werr)
		}
	case err != nil:
		t.Fatalf("parseFP32(%q): %v, strconv: %v", s, err, want)
	case math.Float32bits(got) != math.Float32bits(float32(want)):
		t.Fatalf("parseFP32(%q) = %v (%#08x), strconv %v (%#08x)", s, got, math.Float32bits(got), float32(want), math.Float32bits(float32(want)))
	}
}

func TestParseFP32(t *testing.T) {
	for _, s := range []string{
		"0", "-0", "1", "-1", "0.1", "1e10", "1E-10", "3.4028234663852886e38", "3.4028235e38",
		"3.4028236e38", "1e39", "1e-46", "1.4e-45", "1.17549435e-38", "123456789012345678901234567890",
		"0.000000000000000000000000000001", "16777217", "16777217.000000000001", "9007199254740993",
		"0.48500001430511475", "-2.1179039478302", "1e22", "1e23", "1e-22", "4.5e-23",
		"99999999999999999999", "1.00000005960464477539062", "1.000000059604644775390625",
		"1.0000000596046447753906251",
	} {
		checkFP32(t, s)
	}
	// Not JSON numbers, though strconv or fastjson's tokenizer take them.
	for _, s := range []string{"", "-", "+1", "01", "1.", ".5", "1e", "1e+", "NaN", "inf", "-Infinity", "0x10", "1_0", "1.5.5", "--1"} {
		if _, err := parseFP32([]byte(s)); !errors.Is(err, errBadNumber) {
			t.Errorf("parseFP32(%q) accepted a non-JSON number", s)
		}
	}
}

// TestParseFP32Random checks the fast path on the numbers clients send
// (float32s printed as float64 reprs, shortest float32s, fixed
// precisions) and on the hard cases: exact midpoints between adjacent
// float32s and decimals just either side of them.
func TestParseFP32Random(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	n := 200000
	if testing.Short() {
		n = 20000
	}
	for range n {
		f := math.Float32frombits(rng.Uint32())
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			continue
		}
		if rng.IntN(2) == 0 { // mostly values of ordinary magnitude
			f = float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(12)-6)))
		}
		checkFP32(t, strconv.FormatFloat(float64(f), 'g', -1, 64))
		checkFP32(t, strconv.FormatFloat(float64(f), 'g', -1, 32))
		checkFP32(t, strconv.FormatFloat(float64(f), 'e', rng.IntN(20), 64))

		// The exact midpoint between f and the next float32 up, and
		// decimals a hair either side of it.
		next := math.Nextafter32(f, float32(math.Inf(1)))
		if math.IsInf(float64(next), 0) {
			continue
		}
		mid := new(big.Float).SetPrec(200).Add(big.NewFloat(float64(f)), big.NewFloat(float64(next)))
		mid.Quo(mid, big.NewFloat(2))
		exact := mid.Text('e', 60)
		checkFP32(t, exact)
		for _, digits := range []int{8, 9, 12, 16, 17, 19, 25} {
			checkFP32(t, mid.Text('e', digits))
		}
	}
}

// FuzzParseFP32 holds parseFP32 to strconv on arbitrary text.
func FuzzParseFP32(f *testing.F) {
	for _, s := range []string{"0.1", "-2.1179039478302", "1.00000005960464477539062", "3.4028235e38", "1e-45", "123456789012345678901"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkFP32(t, s) })
}

// TestEightDigits holds the eight-at-a-time digit check and conversion
// to the byte-by-byte ones: on random digit strings with one byte
// replaced by every value, so each boundary around '0' and '9' is met
// in every position.
func TestEightDigits(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 17))
	var s [8]byte
	for range 2000 {
		for i := range s {
			s[i] = '0' + byte(rng.IntN(10))
		}
		pos := rng.IntN(8)
		for c := range 256 {
			s[pos] = byte(c)
			x := binary.LittleEndian.Uint64(s[:])
			want := true
			var v uint64
			for _, d := range s {
				want = want && d >= '0' && d <= '9'
				v = v*10 + uint64(d-'0')
			}
			if got := eightDigits(x); got != want {
				t.Fatalf("eightDigits(%q) = %v", s[:], got)
			}
			if want && parseEightDigits(x) != v {
				t.Fatalf("parseEightDigits(%q) = %d, want %d", s[:], parseEightDigits(x), v)
			}
		}
	}
}

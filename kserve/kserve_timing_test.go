package kserve

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/valyala/fastjson/fastfloat"
)

const imageElems = 3 * 224 * 224 // 150528: one ImageNet row

// imageValues returns normalised-pixel-like float32 values.
func imageValues() []float32 {
	rng := rand.New(rand.NewPCG(1, 2))
	v := make([]float32, imageElems)
	for i := range v {
		v[i] = float32(rng.Float64()*4.7 - 2.1)
	}
	return v
}

// jsonRequest writes a [1,3,224,224] FP32 request. long mimics Python
// clients (numpy float32 -> Python float -> repr: 17 significant digits),
// short mimics clients that print float32s shortest (8-9 digits).
func jsonRequest(long bool) []byte {
	b := []byte(`{"id":"bench","inputs":[{"name":"input","datatype":"FP32","shape":[1,3,224,224],"data":[`)
	for i, f := range imageValues() {
		if i > 0 {
			b = append(b, ',')
		}
		if long {
			b = strconv.AppendFloat(b, float64(f), 'g', -1, 64)
		} else {
			b = strconv.AppendFloat(b, float64(f), 'g', -1, 32)
		}
	}
	return append(b, `]}],"outputs":[{"name":"output","parameters":{"binary_data":true}}]}`...)
}

// jsonNestedRequest writes the same row nested as its shape, as numpy's
// tolist() gives it, in float32-shortest form.
func jsonNestedRequest() []byte {
	b := []byte(`{"id":"bench","inputs":[{"name":"input","datatype":"FP32","shape":[1,3,224,224],"data":[[`)
	v := imageValues()
	for c := range 3 {
		if c > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		for y := range 224 {
			if y > 0 {
				b = append(b, ',')
			}
			b = append(b, '[')
			for x := range 224 {
				if x > 0 {
					b = append(b, ',')
				}
				b = strconv.AppendFloat(b, float64(v[(c*224+y)*224+x]), 'g', -1, 32)
			}
			b = append(b, ']')
		}
		b = append(b, ']')
	}
	return append(b, `]]}],"outputs":[{"name":"output","parameters":{"binary_data":true}}]}`...)
}

func binaryRequest() ([]byte, int) {
	h := `{"id":"bench","inputs":[{"name":"input","shape":[1,3,224,224],"datatype":"FP32","parameters":{"binary_data_size":602112}}],"outputs":[{"name":"output","parameters":{"binary_data":true}}]}`
	return binaryBody(h, f32bytes(imageValues()...))
}

func benchParse(b *testing.B, body []byte, hl int) {
	var r InferRequest
	if err := ParseInferRequest(&r, body, hl); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := ParseInferRequest(&r, body, hl); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseJSON150528 parses one ImageNet row sent as JSON numbers.
func BenchmarkParseJSON150528(b *testing.B) {
	b.Run("python-repr", func(b *testing.B) { benchParse(b, jsonRequest(true), -1) })
	b.Run("float32-shortest", func(b *testing.B) { benchParse(b, jsonRequest(false), -1) })
	b.Run("nested", func(b *testing.B) { benchParse(b, jsonNestedRequest(), -1) })
}

// BenchmarkParseBinary150528 parses the same row as binary tensor data.
func BenchmarkParseBinary150528(b *testing.B) {
	body, hl := binaryRequest()
	benchParse(b, body, hl)
}

// BenchmarkFloatText is the benchmark behind parseFP32, the FP32 data
// path: validating JSON's grammar and reading the digits in one pass with
// an exact fast path beats strconv.ParseFloat(s, 32) (which rounds
// correctly but re-scans for Go syntax), and fastjson's own Float64
// (fastfloat) is no faster than strconv on 17-digit numbers and rounds
// to float64 first, inexactly.
func BenchmarkFloatText(b *testing.B) {
	var texts []string
	for _, f := range imageValues()[:4096] {
		texts = append(texts, strconv.FormatFloat(float64(f), 'g', -1, 64))
	}
	raw := make([][]byte, len(texts))
	for i, s := range texts {
		raw[i] = []byte(s)
	}
	b.Run("parseFP32", func(b *testing.B) {
		b.ReportAllocs()
		var sink float32
		for b.Loop() {
			for _, s := range raw {
				f, _ := parseFP32(s)
				sink += f
			}
		}
		_ = sink
	})
	b.Run("strconv-32", func(b *testing.B) {
		b.ReportAllocs()
		var sink float32
		for b.Loop() {
			for _, s := range texts {
				f, _ := strconv.ParseFloat(s, 32)
				sink += float32(f)
			}
		}
		_ = sink
	})
	b.Run("fastfloat-64", func(b *testing.B) {
		b.ReportAllocs()
		var sink float32
		for b.Loop() {
			for _, s := range texts {
				f, _ := fastfloat.Parse(s)
				sink += float32(f)
			}
		}
		_ = sink
	})
}

// BenchmarkAppendResponse encodes 1000 FP32 logits, as JSON and binary.
func BenchmarkAppendResponse(b *testing.B) {
	logits := make([]float32, 1000)
	for i := range logits {
		logits[i] = float32(math.Sin(float64(i))) * 12
	}
	r := &InferResponse{ModelName: "resnet50", ModelVersion: "1", ID: "bench",
		Outputs: []Tensor{{Name: "output", Datatype: FP32, Shape: []int64{1, 1000}, Data: f32bytes(logits...)}}}
	for _, binary := range []bool{false, true} {
		name := "json"
		if binary {
			name = "binary"
		}
		b.Run(name, func(b *testing.B) {
			r.BinaryOut = []bool{binary}
			buf, _ := AppendInferResponse(nil, r)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				buf, _ = AppendInferResponse(buf[:0], r)
			}
		})
	}
}

package kserve

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestResponseBinaryLayout encodes a response with JSON and binary
// outputs, parses the header back with encoding/json and finds each
// binary output where the header length and sizes say it is.
func TestResponseBinaryLayout(t *testing.T) {
	logits := f32bytes(0.5, -1.25, 3e-7)
	ids := binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, 7), 42)
	r := &InferResponse{
		ModelName:    "resnet50",
		ModelVersion: "1",
		ID:           "req-9",
		Outputs: []Tensor{
			{Name: "logits", Datatype: FP32, Shape: []int64{1, 3}, Data: logits},
			{Name: "mask", Datatype: BOOL, Shape: []int64{2}, Data: []byte{1, 0}},
			{Name: "ids", Datatype: INT64, Shape: []int64{2}, Data: ids},
		},
		BinaryOut: []bool{true, false, true},
	}
	prefix := []byte("existing")
	out, hl := AppendInferResponse(prefix, r)
	if !bytes.HasPrefix(out, []byte("existing")) {
		t.Fatal("dst's contents were not kept")
	}
	body := out[len("existing"):]
	if want := len(body) - len(logits) - len(ids); hl != want {
		t.Fatalf("header length %d, want %d (body %d bytes)", hl, want, len(body))
	}
	var doc struct {
		ModelName    string `json:"model_name"`
		ModelVersion string `json:"model_version"`
		ID           string `json:"id"`
		Outputs      []struct {
			Name       string          `json:"name"`
			Datatype   string          `json:"datatype"`
			Shape      []int64         `json:"shape"`
			Data       json.RawMessage `json:"data"`
			Parameters struct {
				BinaryDataSize *int `json:"binary_data_size"`
			} `json:"parameters"`
		} `json:"outputs"`
	}
	dec := json.NewDecoder(bytes.NewReader(body[:hl]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("header is not the expected JSON: %v\n%s", err, body[:hl])
	}
	if doc.ModelName != "resnet50" || doc.ModelVersion != "1" || doc.ID != "req-9" || len(doc.Outputs) != 3 {
		t.Fatalf("header: %+v", doc)
	}
	off := hl
	for i, o := range doc.Outputs {
		want := r.Outputs[i]
		if o.Name != want.Name || o.Datatype != want.Datatype || len(o.Shape) != len(want.Shape) {
			t.Errorf("output %d: %+v", i, o)
		}
		if !r.BinaryOut[i] {
			if o.Parameters.BinaryDataSize != nil || string(o.Data) != "[true,false]" {
				t.Errorf("JSON output %d: data %s, parameters %+v", i, o.Data, o.Parameters)
			}
			continue
		}
		if o.Data != nil || o.Parameters.BinaryDataSize == nil {
			t.Fatalf("binary output %d has data %s or no binary_data_size", i, o.Data)
		}
		n := *o.Parameters.BinaryDataSize
		if got := body[off : off+n]; !bytes.Equal(got, want.Data) {
			t.Errorf("binary output %d at offset %d: % x, want % x", i, off, got, want.Data)
		}
		off += n
	}
	if off != len(body) {
		t.Errorf("binary outputs end at %d, body has %d bytes", off, len(body))
	}
}

func TestResponseJSONOnly(t *testing.T) {
	r := &InferResponse{
		ModelName: "m",
		Outputs: []Tensor{
			{Name: "y", Datatype: FP32, Shape: []int64{5}, Data: f32bytes(1, 0.1, float32(math.NaN()), float32(math.Inf(-1)), 1e-10)},
			{Name: "h", Datatype: FP16, Shape: []int64{2}, Data: []byte{0x00, 0x3c, 0x01, 0x00}}, // 1, smallest subnormal
		},
	}
	out, hl := AppendInferResponse(nil, r)
	if hl != len(out) {
		t.Errorf("header length %d, body %d: no output is binary", hl, len(out))
	}
	// No model_version or id when empty; NaN and infinities as null.
	want := `{"model_name":"m","outputs":[{"name":"y","datatype":"FP32","shape":[5],"data":[1,0.1,null,null,1e-10]},` +
		`{"name":"h","datatype":"FP16","shape":[2],"data":[1,6e-08]}]}`
	if string(out) != want {
		t.Errorf("got\n  %s\nwant\n  %s", out, want)
	}
	if !json.Valid(out) {
		t.Error("not valid JSON")
	}
}

// TestFP32Shortest checks that JSON floats read back to the same float32
// and are no longer than needed.
func TestFP32Shortest(t *testing.T) {
	vals := []float32{0.1, 1.0 / 3, -2.1179039, 16777217, math.SmallestNonzeroFloat32, math.MaxFloat32, 123456.7}
	out, _ := AppendInferResponse(nil, &InferResponse{ModelName: "m", Outputs: []Tensor{{Name: "x", Datatype: FP32, Shape: []int64{int64(len(vals))}, Data: f32bytes(vals...)}}})
	var doc struct {
		Outputs []struct {
			Data []json.Number `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	for i, n := range doc.Outputs[0].Data {
		f, err := strconv.ParseFloat(string(n), 32)
		if err != nil || float32(f) != vals[i] {
			t.Errorf("%v written as %s, reads back as %v", vals[i], n, f)
		}
		if len(n) > 15 {
			t.Errorf("%v written as %s: not the shortest form", vals[i], n)
		}
	}
}

func TestAppendError(t *testing.T) {
	msg := "input \"x\": bad\\path\nline\ttab\x01\x1f ünï \u2028 \xff end"
	out := AppendError([]byte("prefix:"), msg)
	body, ok := bytes.CutPrefix(out, []byte("prefix:"))
	if !ok {
		t.Fatal("prefix lost")
	}
	want := `{"error":"input \"x\": bad\\path\nline\ttab\u0001\u001f ünï \u2028 \ufffd end"}`
	if string(body) != want {
		t.Errorf("got\n  %s\nwant\n  %s", body, want)
	}
	var doc struct{ Error string }
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("not valid JSON: %v", err)
	}
	if doc.Error != strings.ToValidUTF8(msg, "\ufffd") {
		t.Errorf("decodes to %q", doc.Error)
	}
	// Agrees with encoding/json on every byte value.
	for c := range 256 {
		s := "a" + string([]byte{byte(c)}) + "b"
		ours := AppendError(nil, s)
		var back struct{ Error string }
		if err := json.Unmarshal(ours, &back); err != nil {
			t.Fatalf("byte %#x: invalid JSON %s: %v", c, ours, err)
		}
		if want := strings.ToValidUTF8(s, "\ufffd"); back.Error != want {
			t.Errorf("byte %#x: decodes to %q, want %q", c, back.Error, want)
		}
	}
}

// TestHalfConversions checks FP16 both ways against exact arithmetic:
// every half converts to a float32 and back to itself, and values between
// two halves round to the nearer one, ties to even.
func TestHalfConversions(t *testing.T) {
	for h := range 1 << 16 {
		f := HalfToFloat32(uint16(h))
		if math.IsNaN(float64(f)) {
			if h&0x7c00 != 0x7c00 || h&0x3ff == 0 {
				t.Fatalf("%#04x decoded to NaN", h)
			}
			continue
		}
		back, ok := Float64ToHalf(float64(f))
		if math.IsInf(float64(f), 0) {
			if ok || back != uint16(h) {
				t.Fatalf("%#04x (inf): Float64ToHalf = %#04x, %v", h, back, ok)
			}
			continue
		}
		if !ok || back != uint16(h) {
			t.Fatalf("%#04x -> %v -> %#04x, %v", h, f, back, ok)
		}
	}
	// Between neighbours (positive finite halves): just below the midpoint
	// rounds down, just above rounds up, the midpoint rounds to even.
	for h := uint16(0); h < 0x7bff; h++ {
		lo, hi := float64(HalfToFloat32(h)), float64(HalfToFloat32(h+1))
		mid := (lo + hi) / 2
		check := func(f float64, want uint16) {
			if got, ok := Float64ToHalf(f); !ok || got != want {
				t.Fatalf("Float64ToHalf(%v) = %#04x, %v; want %#04x", f, got, ok, want)
			}
		}
		check(math.Nextafter(mid, math.Inf(-1)), h)
		check(math.Nextafter(mid, math.Inf(1)), h+1)
		even := h
		if h&1 == 1 {
			even = h + 1
		}
		check(mid, even)
		check(-mid, even|0x8000)
	}
	// The JSON text of every finite half reads back as that half.
	for h := range 1 << 16 {
		f := HalfToFloat32(uint16(h))
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			continue
		}
		text := appendHalf(nil, uint16(h))
		back, err := strconv.ParseFloat(string(text), 64)
		if err != nil {
			t.Fatalf("%#04x written as %q: %v", h, text, err)
		}
		if b, _ := Float64ToHalf(back); b != uint16(h) && !(back == 0 && f == 0) {
			t.Fatalf("%#04x written as %q reads back as %#04x", h, text, b)
		}
	}
	for _, tc := range []struct {
		f    float64
		want uint16
		ok   bool
	}{
		{65504, 0x7bff, true},
		{65519.99, 0x7bff, true},
		{65520, 0x7c00, false}, // rounds to infinity
		{1e10, 0x7c00, false},
		{-1e10, 0xfc00, false},
		{math.NaN(), 0x7e00, false},
		{1e-30, 0, true}, // underflows to zero
		{-1e-30, 0x8000, true},
		{math.Copysign(0, -1), 0x8000, true},
	} {
		got, ok := Float64ToHalf(tc.f)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Float64ToHalf(%v) = %#04x, %v; want %#04x, %v", tc.f, got, ok, tc.want, tc.ok)
		}
	}
}

func TestMetadataJSON(t *testing.T) {
	m := ModelMetadata{
		Name:     "resnet50",
		Versions: []string{"1"},
		Platform: "onnxruntime_onnx",
		Inputs:   []TensorMetadata{{Name: "input", Datatype: FP32, Shape: []int64{-1, 3, 224, 224}}},
		Outputs:  []TensorMetadata{{Name: "output", Datatype: FP32, Shape: []int64{-1, 1000}}},
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"name":"resnet50","versions":["1"],"platform":"onnxruntime_onnx","inputs":[{"name":"input","datatype":"FP32","shape":[-1,3,224,224]}],"outputs":[{"name":"output","datatype":"FP32","shape":[-1,1000]}]}`
	if string(b) != want {
		t.Errorf("model metadata\n  %s\nwant\n  %s", b, want)
	}
	b, err = json.Marshal(ServerMetadata{Name: "inferd", Version: "0.1.0", Extensions: []string{ExtensionBinaryTensorData}})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"name":"inferd","version":"0.1.0","extensions":["binary_tensor_data"]}`; string(b) != want {
		t.Errorf("server metadata %s, want %s", b, want)
	}
}

// deserializeBytes decodes a BYTES tensor the way tritonclient's
// deserialize_bytes_tensor does: repeatedly a 4-byte little-endian length,
// then that many bytes, to the end of the buffer.
func deserializeBytes(t *testing.T, b []byte) []string {
	t.Helper()
	var out []string
	for off := 0; off < len(b); {
		if off+4 > len(b) {
			t.Fatalf("BYTES data: %d stray bytes at offset %d", len(b)-off, off)
		}
		n := int(binary.LittleEndian.Uint32(b[off:]))
		off += 4
		if off+n > len(b) {
			t.Fatalf("BYTES data: element of %d bytes at offset %d overruns %d", n, off, len(b))
		}
		out = append(out, string(b[off:off+n]))
		off += n
	}
	return out
}

// BYTES outputs (the classification extension's) go as JSON strings, or
// in binary as length-prefixed elements with binary_data_size their total.
func TestResponseBytes(t *testing.T) {
	elems := []string{"7.500000:1:cat", "", `q"uo\te` + "\n\u00e9"}
	var data []byte
	for _, s := range elems {
		data = AppendBytesElement(data, s)
	}
	for _, bin := range []bool{false, true} {
		r := &InferResponse{ModelName: "m", Outputs: []Tensor{{Name: "cls", Datatype: BYTES, Shape: []int64{1, 3}, Data: data}}, BinaryOut: []bool{bin}}
		out, hl := AppendInferResponse(nil, r)
		var doc struct {
			Outputs []struct {
				Datatype   string   `json:"datatype"`
				Shape      []int64  `json:"shape"`
				Data       []string `json:"data"`
				Parameters struct {
					BinaryDataSize int `json:"binary_data_size"`
				} `json:"parameters"`
			} `json:"outputs"`
		}
		if err := json.Unmarshal(out[:hl], &doc); err != nil {
			t.Fatalf("binary %v: %v\n%s", bin, err, out[:hl])
		}
		o := doc.Outputs[0]
		if o.Datatype != BYTES || len(o.Shape) != 2 || o.Shape[1] != 3 {
			t.Fatalf("binary %v: header %s", bin, out[:hl])
		}
		got := o.Data
		if bin {
			if o.Parameters.BinaryDataSize != len(data) || len(out)-hl != len(data) || o.Data != nil {
				t.Fatalf("binary: binary_data_size %d, %d bytes after the header, want %d", o.Parameters.BinaryDataSize, len(out)-hl, len(data))
			}
			got = deserializeBytes(t, out[hl:])
		} else if hl != len(out) {
			t.Fatalf("JSON: header length %d of %d", hl, len(out))
		}
		if !slices.Equal(got, elems) {
			t.Errorf("binary %v: elements %q, want %q", bin, got, elems)
		}
	}
	// A truncated element (not one the server makes) still gives valid JSON.
	out, _ := AppendInferResponse(nil, &InferResponse{ModelName: "m", Outputs: []Tensor{{Name: "x", Datatype: BYTES, Shape: []int64{1}, Data: []byte{9, 0, 0, 0, 'a', 'b'}}}})
	if !json.Valid(out) || !bytes.Contains(out, []byte(`"data":["ab"]`)) {
		t.Errorf("truncated BYTES element: %s", out)
	}
}

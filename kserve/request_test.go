package kserve

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func f32bytes(vs ...float32) []byte {
	b := make([]byte, 4*len(vs))
	for i, v := range vs {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

func parse(t *testing.T, body string, headerLen int) *InferRequest {
	t.Helper()
	var r InferRequest
	if err := ParseInferRequest(&r, []byte(body), headerLen); err != nil {
		t.Fatalf("ParseInferRequest: %v", err)
	}
	return &r
}

// binaryBody builds a request the way Triton's Python client does: the
// JSON header, then each binary input's raw bytes in input order; it
// returns the body and the Inference-Header-Content-Length value.
func binaryBody(header string, blobs ...[]byte) ([]byte, int) {
	body := []byte(header)
	for _, b := range blobs {
		body = append(body, b...)
	}
	return body, len(header)
}

func TestParseHappyPath(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		want InferRequest
	}{
		{
			name: "flat FP32",
			body: `{"inputs":[{"name":"x","datatype":"FP32","shape":[2,2],"data":[1,2.5,-3,0.1]}]}`,
			want: InferRequest{Inputs: []Tensor{{Name: "x", Datatype: FP32, Shape: []int64{2, 2}, Data: f32bytes(1, 2.5, -3, 0.1)}}},
		},
		{
			// Nested data flattens row-major to the same bytes.
			name: "nested FP32",
			body: `{"inputs":[{"name":"x","datatype":"FP32","shape":[2,2],"data":[[1,2.5],[-3,0.1]]}]}`,
			want: InferRequest{Inputs: []Tensor{{Name: "x", Datatype: FP32, Shape: []int64{2, 2}, Data: f32bytes(1, 2.5, -3, 0.1)}}},
		},
		{
			name: "three levels of nesting",
			body: `{"inputs":[{"name":"x","datatype":"INT8","shape":[2,1,3],"data":[[[1,2,3]],[[4,5,-6]]]}]}`,
			want: InferRequest{Inputs: []Tensor{{Name: "x", Datatype: INT8, Shape: []int64{2, 1, 3}, Data: []byte{1, 2, 3, 4, 5, 0xfa}}}},
		},
		{
			name: "scalar",
			body: `{"inputs":[{"name":"s","datatype":"INT32","shape":[],"data":[7]}]}`,
			want: InferRequest{Inputs: []Tensor{{Name: "s", Datatype: INT32, Shape: []int64{}, Data: []byte{7, 0, 0, 0}}}},
		},
		{
			name: "zero-size dimension",
			body: `{"inputs":[{"name":"e","datatype":"FP32","shape":[0,3],"data":[]}]}`,
			want: InferRequest{Inputs: []Tensor{{Name: "e", Datatype: FP32, Shape: []int64{0, 3}, Data: []byte{}}}},
		},
		{
			// JSON encoders write whole floats as 3.0 or 1e2; they are
			// integers.
			name: "integral floats for INT64",
			body: `{"inputs":[{"name":"i","datatype":"INT64","shape":[3],"data":[3.0,1e2,-0]}]}`,
			want: InferRequest{Inputs: []Tensor{{Name: "i", Datatype: INT64, Shape: []int64{3}, Data: []byte{3, 0, 0, 0, 0, 0, 0, 0, 100, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}}}},
		},
		{
			name: "BOOL from true, false, 0 and 1",
			body: `{"inputs":[{"name":"b","datatype":"BOOL","shape":[4],"data":[true,false,1,0]}]}`,
			want: InferRequest{Inputs: []Tensor{{Name: "b", Datatype: BOOL, Shape: []int64{4}, Data: []byte{1, 0, 1, 0}}}},
		},
		{
			name: "id and request parameters",
			body: `{"id":"req-1","parameters":{"timeout":2500,"priority":2,"binary_data_output":true,"sequence_id":9},
				"inputs":[{"name":"x","datatype":"UINT8","shape":[1],"data":[255]}]}`,
			want: InferRequest{ID: "req-1", Timeout: 2500 * time.Microsecond, Priority: 2, BinaryOutput: true,
				Inputs: []Tensor{{Name: "x", Datatype: UINT8, Shape: []int64{1}, Data: []byte{255}}}},
		},
		{
			// binary_data on an output overrides binary_data_output either way.
			name: "outputs resolve binary",
			body: `{"parameters":{"binary_data_output":true},
				"inputs":[{"name":"x","datatype":"UINT8","shape":[1],"data":[1]}],
				"outputs":[{"name":"a"},{"name":"b","parameters":{"binary_data":false}},{"name":"c","parameters":{"classification":3}}]}`,
			want: InferRequest{BinaryOutput: true,
				Inputs:  []Tensor{{Name: "x", Datatype: UINT8, Shape: []int64{1}, Data: []byte{1}}},
				Outputs: []RequestedOutput{{Name: "a", Binary: true}, {Name: "b", Binary: false}, {Name: "c", Binary: true, ClassCount: 3}}},
		},
		{
			name: "per-output binary without request default",
			body: `{"inputs":[{"name":"x","datatype":"UINT8","shape":[1],"data":[1]}],
				"outputs":[{"name":"a","parameters":{"binary_data":true}},{"name":"b"}]}`,
			want: InferRequest{
				Inputs:  []Tensor{{Name: "x", Datatype: UINT8, Shape: []int64{1}, Data: []byte{1}}},
				Outputs: []RequestedOutput{{Name: "a", Binary: true}, {Name: "b"}}},
		},
		{
			// Fields of other extensions are ignored, as the protocol asks.
			name: "unknown fields ignored",
			body: `{"model_name":"m","extra":{"a":[1,2]},"inputs":[{"name":"x","datatype":"UINT8","shape":[1],"data":[1],"parameters":{"content_type":"x"}}]}`,
			want: InferRequest{Inputs: []Tensor{{Name: "x", Datatype: UINT8, Shape: []int64{1}, Data: []byte{1}}}},
		},
		{
			name: "escaped names",
			body: `{"id":"a\"b","inputs":[{"name":"in\u0070ut","datatype":"UINT8","shape":[1],"data":[1]}]}`,
			want: InferRequest{ID: `a"b`, Inputs: []Tensor{{Name: "input", Datatype: UINT8, Shape: []int64{1}, Data: []byte{1}}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := parse(t, tc.body, -1)
			assertRequest(t, got, &tc.want)
		})
	}
}

func assertRequest(t *testing.T, got, want *InferRequest) {
	t.Helper()
	if got.ID != want.ID || got.BinaryOutput != want.BinaryOutput || got.Timeout != want.Timeout || got.Priority != want.Priority {
		t.Errorf("request fields: got id=%q binary=%v timeout=%v priority=%d, want id=%q binary=%v timeout=%v priority=%d",
			got.ID, got.BinaryOutput, got.Timeout, got.Priority, want.ID, want.BinaryOutput, want.Timeout, want.Priority)
	}
	if len(got.Inputs) != len(want.Inputs) {
		t.Fatalf("%d inputs, want %d", len(got.Inputs), len(want.Inputs))
	}
	for i := range want.Inputs {
		g, w := &got.Inputs[i], &want.Inputs[i]
		if g.Name != w.Name || g.Datatype != w.Datatype || len(g.Shape) != len(w.Shape) || !bytes.Equal(g.Data, w.Data) {
			t.Errorf("input %d = %+v, want %+v", i, *g, *w)
		}
		for j := range w.Shape {
			if g.Shape[j] != w.Shape[j] {
				t.Errorf("input %d shape %v, want %v", i, g.Shape, w.Shape)
			}
		}
	}
	if len(got.Outputs) != len(want.Outputs) || len(want.Outputs) > 0 && !reflect.DeepEqual(got.Outputs, want.Outputs) {
		t.Errorf("outputs = %+v, want %+v", got.Outputs, want.Outputs)
	}
}

func TestParseSadPath(t *testing.T) {
	one := func(dt, data string) string {
		return `{"inputs":[{"name":"x","datatype":"` + dt + `","shape":[1],"data":[` + data + `]}]}`
	}
	for _, tc := range []struct {
		name      string
		body      string
		headerLen int    // -1: pure JSON
		msg       string // exact message, or prefix when it ends in "..."
		sentinel  error
	}{
		// Structure.
		{"malformed JSON", `{"inputs":[`, -1, "malformed request JSON: cannot parse JSON...", ErrInvalidJSON},
		{"trailing garbage", `{"inputs":[]} x`, -1, "malformed request JSON: unexpected tail...", ErrInvalidJSON},
		{"empty body", ``, -1, "malformed request JSON...", ErrInvalidJSON},
		{"not an object", `[1,2]`, -1, "malformed request JSON: the request must be a JSON object, got array", ErrInvalidJSON},
		{"missing inputs", `{"id":"a"}`, -1, `request has no "inputs": expected an array of input tensors`, nil},
		{"inputs not array", `{"inputs":{}}`, -1, `"inputs" must be an array of input tensors, got object`, nil},
		{"empty inputs", `{"inputs":[]}`, -1, `"inputs" is empty: expected at least one input tensor`, nil},
		{"input not object", `{"inputs":[3]}`, -1, "inputs[0] must be an object with name, datatype, shape and data, got number", nil},
		{"id not string", `{"id":5,"inputs":[]}`, -1, `"id" must be a string, got number`, nil},
		// Input fields.
		{"no name", `{"inputs":[{"datatype":"FP32","shape":[1],"data":[1]}]}`, -1, `inputs[0] has no "name"`, nil},
		{"empty name", `{"inputs":[{"name":"","datatype":"FP32","shape":[1],"data":[1]}]}`, -1, `inputs[0] "name" must be a non-empty string`, nil},
		{"no datatype", `{"inputs":[{"name":"x","shape":[1],"data":[1]}]}`, -1, `input "x" has no "datatype": expected one of BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64`, nil},
		{"no shape", `{"inputs":[{"name":"x","datatype":"FP32","data":[1]}]}`, -1, `input "x" has no "shape": expected an array of dimensions such as [1,3,224,224]`, nil},
		{"BYTES", `{"inputs":[{"name":"x","datatype":"BYTES","shape":[1],"data":["a"]}]}`, -1, `input "x": unsupported datatype "BYTES": string tensors are not supported, expected one of BOOL, ...`, ErrUnsupportedDatatype},
		{"unknown datatype", `{"inputs":[{"name":"x","datatype":"fp32","shape":[1],"data":[1]}]}`, -1, `input "x": unsupported datatype "fp32": expected one of BOOL, ...`, ErrUnsupportedDatatype},
		{"negative dim", `{"inputs":[{"name":"x","datatype":"FP32","shape":[1,-3],"data":[]}]}`, -1, `input "x": shape[1] got -3: expected a whole number >= 0`, nil},
		{"fractional dim", `{"inputs":[{"name":"x","datatype":"FP32","shape":[1.5],"data":[1]}]}`, -1, `input "x": shape[0] got 1.5: expected a whole number >= 0`, nil},
		{"shape overflow", `{"inputs":[{"name":"x","datatype":"FP32","shape":[4294967296,4294967296],"data":[]}]}`, -1, `input "x": shape [4294967296,4294967296] has more elements than fit in int64`, nil},
		{"neither data nor binary", `{"inputs":[{"name":"x","datatype":"FP32","shape":[1]}]}`, -1, `input "x" has neither "data" nor parameters.binary_data_size`, nil},
		{"shared memory", `{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"parameters":{"shared_memory_region":"r"}}]}`, -1, `input "x": shared memory inputs (parameters.shared_memory_region) are not supported: send data or binary data`, nil},
		{"duplicate input", `{"inputs":[{"name":"x","datatype":"UINT8","shape":[1],"data":[1]},{"name":"x","datatype":"UINT8","shape":[1],"data":[2]}]}`, -1, `input "x" appears twice (inputs[0] and inputs[1])`, nil},
		// Data against shape.
		{"data too short", `{"inputs":[{"name":"input","datatype":"FP32","shape":[1,3,2,2],"data":[1,2,3,4,5,6,7,8,9,10,11]}]}`, -1, `input "input": data has 11 elements, shape [1,3,2,2] needs 12`, nil},
		{"data too long", `{"inputs":[{"name":"x","datatype":"FP32","shape":[2],"data":[1,2,3]}]}`, -1, `input "x": data has 3 elements, shape [2] needs 2`, nil},
		{"nested row too short", `{"inputs":[{"name":"x","datatype":"FP32","shape":[2,3],"data":[[1,2,3],[4,5]]}]}`, -1, `input "x": data nesting does not match shape [2,3]: data[1] has 2 elements, expected 3`, nil},
		{"nested too shallow", `{"inputs":[{"name":"x","datatype":"FP32","shape":[2,2,2],"data":[[1,2,3,4],[5,6,7,8]]}]}`, -1, `input "x": data nesting does not match shape [2,2,2]: data is nested 2 deep, the shape has 3 dimensions`, nil},
		{"nested ragged", `{"inputs":[{"name":"x","datatype":"FP32","shape":[2,2],"data":[[1,2],3]}]}`, -1, `input "x": data nesting does not match shape [2,2]: data[1] is a number, expected an array of 2`, nil},
		{"nested for a scalar", `{"inputs":[{"name":"x","datatype":"FP32","shape":[],"data":[[1]]}]}`, -1, `input "x": data nesting does not match shape []: data is nested 2 deep, the shape has 0 dimensions`, nil},
		{"array inside flat data", `{"inputs":[{"name":"x","datatype":"FP32","shape":[2],"data":[1,[2]]}]}`, -1, `input "x": data element 1 is an array, expected a number for FP32`, nil},
		{"data not array", `{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":1}]}`, -1, `input "x" "data" must be an array of numbers (flat, or nested as the shape), got number`, nil},
		// Elements.
		{"string element", one("FP32", `"1"`), -1, `input "x": data element 0 is a string, expected a number for FP32`, nil},
		{"null element", one("INT32", `null`), -1, `input "x": data element 0 is null, expected a number for INT32`, nil},
		{"bool for FP32", one("FP32", `true`), -1, `input "x": data element 0 is true, expected a number for FP32`, nil},
		{"object element", one("FP32", `{}`), -1, `input "x": data element 0 is an object, expected a number for FP32`, nil},
		{"NaN", one("FP32", `NaN`), -1, `input "x": data element 0 is NaN, not a valid JSON number`, nil},
		{"leading zero", one("FP32", `01`), -1, `input "x": data element 0 is 01, not a valid JSON number`, nil},
		{"string for BOOL", one("BOOL", `"yes"`), -1, `input "x": data element 0 is a string, expected true, false, 0 or 1 for BOOL`, nil},
		{"2 for BOOL", one("BOOL", `2`), -1, `input "x": data element 0 is 2, out of range for BOOL (expected true, false, 0 or 1)`, nil},
		{"fraction for INT32", one("INT32", `1.5`), -1, `input "x": data element 0 is 1.5, expected an integer for INT32`, nil},
		{"INT8 over", one("INT8", `128`), -1, `input "x": data element 0 is 128, out of range for INT8 [-128, 127]`, nil},
		{"INT8 under", one("INT8", `-129`), -1, `input "x": data element 0 is -129, out of range for INT8 [-128, 127]`, nil},
		{"INT16 under", one("INT16", `-32769`), -1, `input "x": data element 0 is -32769, out of range for INT16 [-32768, 32767]`, nil},
		{"INT32 over", one("INT32", `2147483648`), -1, `input "x": data element 0 is 2147483648, out of range for INT32 [-2147483648, 2147483647]`, nil},
		{"INT64 over", one("INT64", `9223372036854775808`), -1, `input "x": data element 0 is 9223372036854775808, out of range for INT64 [-9223372036854775808, 9223372036854775807]`, nil},
		{"INT64 over as float", one("INT64", `1e19`), -1, `input "x": data element 0 is 1e19, out of range for INT64...`, nil},
		{"UINT8 negative", one("UINT8", `-1`), -1, `input "x": data element 0 is -1, out of range for UINT8 [0, 255]`, nil},
		{"UINT16 over", one("UINT16", `65536`), -1, `input "x": data element 0 is 65536, out of range for UINT16 [0, 65535]`, nil},
		{"UINT32 over", one("UINT32", `4294967296`), -1, `input "x": data element 0 is 4294967296, out of range for UINT32 [0, 4294967295]`, nil},
		{"UINT64 over", one("UINT64", `18446744073709551616`), -1, `input "x": data element 0 is 18446744073709551616, out of range for UINT64 [0, 18446744073709551615]`, nil},
		{"FP32 over", one("FP32", `1e39`), -1, `input "x": data element 0 is 1e39, out of range for FP32`, nil},
		{"FP16 over", one("FP16", `65520`), -1, `input "x": data element 0 is 65520, out of range for FP16 (largest magnitude 65504)`, nil},
		{"FP64 over", one("FP64", `1e309`), -1, `input "x": data element 0 is 1e309, out of range for FP64`, nil},
		// Request parameters and outputs.
		{"negative timeout", `{"parameters":{"timeout":-1},"inputs":[]}`, -1, `parameters.timeout: got -1: expected a whole number of microseconds >= 0`, nil},
		{"string timeout", `{"parameters":{"timeout":"5s"},"inputs":[]}`, -1, `parameters.timeout: got string: expected a whole number of microseconds >= 0`, nil},
		{"huge timeout", `{"parameters":{"timeout":9223372036854775807},"inputs":[]}`, -1, `parameters.timeout 9223372036854775807 microseconds is too large: at most 9223372036854775`, nil},
		{"negative priority", `{"parameters":{"priority":-2},"inputs":[]}`, -1, `parameters.priority: got -2: expected a whole number 0..2147483647 (0 is the default priority)`, nil},
		{"binary_data_output not bool", `{"parameters":{"binary_data_output":1},"inputs":[]}`, -1, `parameters.binary_data_output must be true or false, got number`, nil},
		{"parameters not object", `{"parameters":[],"inputs":[]}`, -1, `request "parameters" must be an object, got array`, nil},
		{"output without name", `{"inputs":[{"name":"x","datatype":"UINT8","shape":[1],"data":[1]}],"outputs":[{}]}`, -1, `outputs[0] has no "name"`, nil},
		{"duplicate output", `{"inputs":[{"name":"x","datatype":"UINT8","shape":[1],"data":[1]}],"outputs":[{"name":"o"},{"name":"o"}]}`, -1, `output "o" is requested twice (outputs[0] and outputs[1])`, nil},
		{"binary_data not bool", `{"inputs":[{"name":"x","datatype":"UINT8","shape":[1],"data":[1]}],"outputs":[{"name":"o","parameters":{"binary_data":"yes"}}]}`, -1, `output "o": parameters.binary_data must be true or false, got string`, nil},
		{"negative classification", `{"inputs":[{"name":"x","datatype":"UINT8","shape":[1],"data":[1]}],"outputs":[{"name":"o","parameters":{"classification":-1}}]}`, -1, `output "o": parameters.classification: got -1: expected a class count >= 0`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkBadRequest(t, []byte(tc.body), tc.headerLen, tc.msg, tc.sentinel)
		})
	}
}

func checkBadRequest(t *testing.T, body []byte, headerLen int, msg string, sentinel error) {
	t.Helper()
	var r InferRequest
	err := ParseInferRequest(&r, body, headerLen)
	if err == nil {
		t.Fatal("accepted")
	}
	if prefix, ok := strings.CutSuffix(msg, "..."); ok {
		if !strings.HasPrefix(err.Error(), prefix) {
			t.Errorf("message\n  %q\nwant prefix\n  %q", err, prefix)
		}
	} else if err.Error() != msg {
		t.Errorf("message\n  %q\nwant\n  %q", err, msg)
	}
	var sc interface{ StatusCode() int }
	if !errors.As(err, &sc) || sc.StatusCode() != 400 {
		t.Errorf("status: %v, want 400", err)
	}
	if sentinel != nil && !errors.Is(err, sentinel) {
		t.Errorf("error does not wrap %v", sentinel)
	}
}

// TestParseBinary builds requests the way Triton's Python client does
// (JSON header with parameters.binary_data_size, then the raw bytes in
// input order) and checks they parse to the same tensors as the JSON
// form.
func TestParseBinary(t *testing.T) {
	jsonForm := parse(t, `{"inputs":[
		{"name":"a","datatype":"FP32","shape":[2,2],"data":[1,2.5,-3,0.1]},
		{"name":"b","datatype":"BOOL","shape":[3],"data":[true,false,true]},
		{"name":"c","datatype":"INT16","shape":[2],"data":[-2,300]}]}`, -1)

	// a and c binary, b JSON: the binary blobs are a's then c's.
	header := `{"inputs":[` +
		`{"name":"a","shape":[2,2],"datatype":"FP32","parameters":{"binary_data_size":16}},` +
		`{"name":"b","shape":[3],"datatype":"BOOL","data":[true,false,true]},` +
		`{"name":"c","shape":[2],"datatype":"INT16","parameters":{"binary_data_size":4}}],` +
		`"outputs":[{"name":"out","parameters":{"binary_data":true}}]}`
	body, hl := binaryBody(header, f32bytes(1, 2.5, -3, 0.1), []byte{0xfe, 0xff, 0x2c, 0x01})
	var r InferRequest
	if err := ParseInferRequest(&r, body, hl); err != nil {
		t.Fatal(err)
	}
	for i := range jsonForm.Inputs {
		g, w := r.Inputs[i], jsonForm.Inputs[i]
		if g.Name != w.Name || g.Datatype != w.Datatype || !reflect.DeepEqual(g.Shape, w.Shape) || !bytes.Equal(g.Data, w.Data) {
			t.Errorf("binary input %d = %+v, JSON form %+v", i, g, w)
		}
	}
	if len(r.Outputs) != 1 || !r.Outputs[0].Binary {
		t.Errorf("outputs = %+v", r.Outputs)
	}

	// The data is read in place: the tensor is the body's bytes, capped
	// so that an append cannot write into the body past it; a parse of
	// another body lets go of this one.
	d := r.Inputs[0].Data
	if &d[0] != &body[hl] || cap(d) != len(d) {
		t.Errorf("binary input at %p (cap %d), want the body's bytes at %p (cap %d)", &d[0], cap(d), &body[hl], len(d))
	}
	r.Reset()
	if r.Inputs[:1][0].Data != nil {
		t.Error("Reset kept a reference to the last body")
	}

	// A header length equal to the body with no binary inputs is fine.
	plain := `{"inputs":[{"name":"x","datatype":"UINT8","shape":[1],"data":[1]}]}`
	if err := ParseInferRequest(&r, []byte(plain), len(plain)); err != nil {
		t.Errorf("JSON-only body with Inference-Header-Content-Length: %v", err)
	}
}

func TestParseBinarySadPath(t *testing.T) {
	hdr := func(size int) string {
		return `{"inputs":[{"name":"x","datatype":"FP32","shape":[2],"parameters":{"binary_data_size":` + itoa(size) + `}}]}`
	}
	h8 := hdr(8)
	plain := `{"inputs":[{"name":"x","datatype":"UINT8","shape":[1],"data":[1]}]}`
	both := `{"inputs":[{"name":"x","datatype":"UINT8","shape":[1],"data":[1],"parameters":{"binary_data_size":1}}]}`
	negative := `{"inputs":[{"name":"x","datatype":"FP32","shape":[2],"parameters":{"binary_data_size":-8}}]}`
	for _, tc := range []struct {
		name      string
		body      []byte
		headerLen int
		msg       string
	}{
		{"header length beyond body", []byte(h8), 500, "Inference-Header-Content-Length 500 exceeds the body's " + itoa(len(h8)) + " bytes"},
		{"negative header length", []byte(h8), -7, "Inference-Header-Content-Length -7 is negative"},
		{"binary without header length", []byte(h8), -1, `input "x" has parameters.binary_data_size but the request has no Inference-Header-Content-Length header: set it to the JSON header's length`},
		{"size does not match shape", append([]byte(hdr(12)), make([]byte, 12)...), len(hdr(12)), `input "x": binary_data_size is 12 bytes, shape [2] of FP32 needs 8`},
		{"binary runs past the end", append([]byte(h8), make([]byte, 5)...), len(h8), `input "x": binary data of 8 bytes at offset 0 runs past the end of the body (5 bytes follow the JSON header)`},
		{"extra bytes after binary", append([]byte(h8), make([]byte, 9)...), len(h8), "binary_data_size of the inputs adds up to 8 bytes, but 9 bytes follow the " + itoa(len(h8)) + "-byte JSON header"},
		{"bytes but no binary inputs", append([]byte(plain), 1, 2), len(plain), "binary_data_size of the inputs adds up to 0 bytes, but 2 bytes follow the " + itoa(len(plain)) + "-byte JSON header"},
		{"both data and binary", []byte(both + "\x01"), len(both), `input "x" has both "data" and parameters.binary_data_size: send one or the other`},
		{"header cut inside the JSON", []byte(h8 + "12345678"), 40, "malformed request JSON..."},
		{"header runs into the binary", []byte(h8 + "12345678"), len(h8) + 3, "malformed request JSON: unexpected tail..."},
		{"negative binary size", []byte(negative), len(negative), `input "x": parameters.binary_data_size got -8: expected a byte count >= 0`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkBadRequest(t, tc.body, tc.headerLen, tc.msg, nil)
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestDatatypesRoundTrip parses one JSON tensor of each datatype, checks
// the bytes, encodes them back as a JSON response and checks the values
// survive.
func TestDatatypesRoundTrip(t *testing.T) {
	le := binary.LittleEndian
	for _, tc := range []struct {
		dt   string
		data string // JSON values in the request
		want []byte
		back string // JSON data in the response
	}{
		{BOOL, `true,false`, []byte{1, 0}, `[true,false]`},
		{UINT8, `0,255`, []byte{0, 255}, `[0,255]`},
		{UINT16, `0,65535`, le.AppendUint16(le.AppendUint16(nil, 0), 65535), `[0,65535]`},
		{UINT32, `1,4294967295`, le.AppendUint32(le.AppendUint32(nil, 1), math.MaxUint32), `[1,4294967295]`},
		{UINT64, `2,18446744073709551615`, le.AppendUint64(le.AppendUint64(nil, 2), math.MaxUint64), `[2,18446744073709551615]`},
		{INT8, `-128,127`, []byte{0x80, 0x7f}, `[-128,127]`},
		{INT16, `-32768,32767`, le.AppendUint16(le.AppendUint16(nil, 0x8000), 0x7fff), `[-32768,32767]`},
		{INT32, `-2147483648,2147483647`, le.AppendUint32(le.AppendUint32(nil, 0x80000000), 0x7fffffff), `[-2147483648,2147483647]`},
		{INT64, `-9223372036854775808,9223372036854775807`, le.AppendUint64(le.AppendUint64(nil, 1<<63), 1<<63-1), `[-9223372036854775808,9223372036854775807]`},
		// FP16: 1.5 is exact; 65504 is the largest half; 0.1 rounds to
		// 0x2e66 = 0.0999755859375, written back as the shortest text
		// that reads as the same half: 0.1.
		{FP16, `1.5,65504,0.1`, le.AppendUint16(le.AppendUint16(le.AppendUint16(nil, 0x3e00), 0x7bff), 0x2e66), `[1.5,65504,0.1]`},
		{FP32, `0.1,-2.5e-8,3.4028234663852886e38`, f32bytes(0.1, -2.5e-8, math.MaxFloat32), `[0.1,-2.5e-08,3.4028235e+38]`},
		{FP64, `0.1,1e300`, le.AppendUint64(le.AppendUint64(nil, math.Float64bits(0.1)), math.Float64bits(1e300)), `[0.1,1e+300]`},
	} {
		t.Run(tc.dt, func(t *testing.T) {
			r := parse(t, `{"inputs":[{"name":"x","datatype":"`+tc.dt+`","shape":[`+itoa(len(tc.want)/sizeOf(tc.dt))+`],"data":[`+tc.data+`]}]}`, -1)
			if got := r.Inputs[0].Data; !bytes.Equal(got, tc.want) {
				t.Fatalf("bytes % x, want % x", got, tc.want)
			}
			body, _ := AppendInferResponse(nil, &InferResponse{ModelName: "m", Outputs: r.Inputs})
			want := `{"model_name":"m","outputs":[{"name":"x","datatype":"` + tc.dt + `","shape":[` + itoa(len(tc.want)/sizeOf(tc.dt)) + `],"data":` + tc.back + `}]}`
			if string(body) != want {
				t.Errorf("response\n  %s\nwant\n  %s", body, want)
			}
		})
	}
}

func sizeOf(dt string) int {
	n, _ := DatatypeSize(dt)
	return n
}

// TestParseReuse parses different requests into one InferRequest: no
// state may leak from one to the next.
func TestParseReuse(t *testing.T) {
	var r InferRequest
	big := `{"id":"one","parameters":{"timeout":5,"priority":3,"binary_data_output":true},"inputs":[
		{"name":"a","datatype":"FP32","shape":[1,3],"data":[1,2,3]},
		{"name":"b","datatype":"INT8","shape":[2],"data":[1,2]}],
		"outputs":[{"name":"o1"},{"name":"o2","parameters":{"classification":2}}]}`
	small := `{"inputs":[{"name":"b","datatype":"UINT8","shape":[1],"data":[9]}],"outputs":[{"name":"o2"}]}`
	if err := ParseInferRequest(&r, []byte(big), -1); err != nil {
		t.Fatal(err)
	}
	if err := ParseInferRequest(&r, []byte(small), -1); err != nil {
		t.Fatal(err)
	}
	assertRequest(t, &r, &InferRequest{
		Inputs:  []Tensor{{Name: "b", Datatype: UINT8, Shape: []int64{1}, Data: []byte{9}}},
		Outputs: []RequestedOutput{{Name: "o2"}},
	})
	// A failed parse leaves the request empty, not half-filled; the next
	// good parse is whole again.
	if err := ParseInferRequest(&r, []byte(`{"id":"z","inputs":[{"name":"a","datatype":"UINT8","shape":[1],"data":[1]},{"name":"q"}]}`), -1); err == nil {
		t.Fatal("accepted")
	}
	if r.ID != "" || len(r.Inputs) != 0 || len(r.Outputs) != 0 {
		t.Errorf("failed parse left %+v", r)
	}
	if err := ParseInferRequest(&r, []byte(big), -1); err != nil {
		t.Fatal(err)
	}
	if r.ID != "one" || len(r.Inputs) != 2 || r.Inputs[1].Datatype != INT8 || r.Outputs[1].ClassCount != 2 || !r.Outputs[0].Binary {
		t.Errorf("reparse: %+v", r)
	}
	if in := r.Input("b"); in == nil || !bytes.Equal(in.Data, []byte{1, 2}) {
		t.Errorf("Input(b) = %+v", in)
	}
	if r.Input("zz") != nil {
		t.Error("Input of a missing name is not nil")
	}
}

func TestElements(t *testing.T) {
	for _, tc := range []struct {
		shape []int64
		want  int64
		err   string
	}{
		{nil, 1, ""},
		{[]int64{1, 3, 224, 224}, 150528, ""},
		{[]int64{4, 0, 7}, 0, ""},
		{[]int64{2, -1}, 0, "shape [2,-1]: dimension 1 is -1, expected >= 0"},
		{[]int64{1 << 32, 1 << 31}, 0, "shape [4294967296,2147483648] has more elements than fit in int64"},
	} {
		tt := Tensor{Shape: tc.shape}
		n, err := tt.Elements()
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("Elements(%v) error %v, want %q", tc.shape, err, tc.err)
			}
			continue
		}
		if err != nil || n != tc.want {
			t.Errorf("Elements(%v) = %d, %v; want %d", tc.shape, n, err, tc.want)
		}
	}
}

func TestDatatypeSize(t *testing.T) {
	for dt, want := range map[string]int{BOOL: 1, UINT8: 1, UINT16: 2, UINT32: 4, UINT64: 8, INT8: 1, INT16: 2, INT32: 4, INT64: 8, FP16: 2, FP32: 4, FP64: 8} {
		if n, ok := DatatypeSize(dt); !ok || n != want {
			t.Errorf("DatatypeSize(%s) = %d, %v", dt, n, ok)
		}
	}
	for _, dt := range []string{BYTES, "fp32", "", "BF16"} {
		if _, ok := DatatypeSize(dt); ok {
			t.Errorf("DatatypeSize(%q) is ok", dt)
		}
	}
}

// TestParseMemberOrder: JSON objects are unordered, and some clients
// write "data" before "shape" and "datatype", or "parameters" last. Every
// order parses to the same tensor, and a broken input gets the same error
// whatever its order.
func TestParseMemberOrder(t *testing.T) {
	members := []string{`"name":"x"`, `"datatype":"INT16"`, `"shape":[2,2]`, `"data":[[1,-2],[3,300]]`, `"parameters":{"content_type":"c"}`}
	want := []byte{1, 0, 0xfe, 0xff, 3, 0, 0x2c, 0x01}
	for _, perm := range permutations(len(members)) {
		var ms []string
		for _, i := range perm {
			ms = append(ms, members[i])
		}
		body := `{"outputs":[{"parameters":{"binary_data":true},"name":"o"}],"inputs":[{` + strings.Join(ms, ",") + `}],"id":"r"}`
		r := parse(t, body, -1)
		if in := r.Input("x"); in == nil || in.Datatype != INT16 || !reflect.DeepEqual(in.Shape, []int64{2, 2}) || !bytes.Equal(in.Data, want) {
			t.Fatalf("%s: got %+v", body, r.Inputs)
		}
		if r.ID != "r" || len(r.Outputs) != 1 || !r.Outputs[0].Binary {
			t.Fatalf("%s: got %+v", body, r)
		}
	}
	// Binary data with its parameters before the shape.
	h := `{"inputs":[{"parameters":{"binary_data_size":8},"shape":[2],"name":"x","datatype":"FP32"}]}`
	body, hl := binaryBody(h, f32bytes(1, 2))
	var r InferRequest
	if err := ParseInferRequest(&r, body, hl); err != nil || !bytes.Equal(r.Inputs[0].Data, f32bytes(1, 2)) {
		t.Fatalf("binary, parameters first: %v %+v", err, r.Inputs)
	}
	// The error of a broken input does not depend on the order.
	for _, tc := range []struct{ body, msg string }{
		{`{"inputs":[{"data":[1,2,3],"shape":[2],"datatype":"FP32","name":"x"}]}`, `input "x": data has 3 elements, shape [2] needs 2`},
		{`{"inputs":[{"data":[1],"name":"x","shape":[1]}]}`, `input "x" has no "datatype": expected one of BOOL, ...`},
		{`{"inputs":[{"data":["a"],"parameters":{"binary_data_size":4},"datatype":"FP32","shape":[1],"name":"x"}]}`, `input "x" has both "data" and parameters.binary_data_size: send one or the other`},
		{`{"inputs":[{"data":[1],"parameters":[],"datatype":"FP32","shape":[1],"name":"x"}]}`, `input "x" "parameters" must be an object, got array`},
		{`{"inputs":[{"data":[[1,2],[3]],"datatype":"FP32","shape":[2,2],"name":"x"}]}`, `input "x": data nesting does not match shape [2,2]: data[1] has 1 elements, expected 2`},
	} {
		checkBadRequest(t, []byte(tc.body), -1, tc.msg, nil)
	}
}

// permutations returns every order of 0..n-1.
func permutations(n int) [][]int {
	if n == 0 {
		return [][]int{{}}
	}
	var out [][]int
	for _, p := range permutations(n - 1) {
		for i := 0; i <= len(p); i++ {
			q := append(append(append([]int{}, p[:i]...), n-1), p[i:]...)
			out = append(out, q)
		}
	}
	return out
}

// TestParseDatatypesRandom writes random tensors of every datatype as
// JSON, flat, nested and with data first, in the spellings clients use
// (integers as 3, 3.0 or 3e0; floats shortest, as float64 reprs, with
// exponents), and checks each parses to the bytes the value's datatype
// gives it, computed independently with strconv.
func TestParseDatatypesRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	le := binary.LittleEndian
	for _, dt := range supportedDatatypes {
		for range 20 {
			shape := []int64{int64(1 + rng.IntN(3)), int64(1 + rng.IntN(4)), int64(1 + rng.IntN(5))}
			n := int(shape[0] * shape[1] * shape[2])
			texts := make([]string, n)
			var want []byte
			for i := range texts {
				var s string
				switch dt {
				case BOOL:
					v := rng.IntN(2)
					s = [][]string{{"false", "0"}, {"true", "1"}}[v][rng.IntN(2)]
					want = append(want, byte(v))
				case FP32, FP64, FP16:
					f := rng.NormFloat64() * math.Pow(10, float64(rng.IntN(8)-4))
					if dt == FP16 {
						f = math.Mod(f, 60000)
					}
					s = strconv.FormatFloat(f, "eg"[rng.IntN(2)], -1, 64)
					v, _ := strconv.ParseFloat(s, 64)
					switch dt {
					case FP32:
						v32, _ := strconv.ParseFloat(s, 32)
						want = le.AppendUint32(want, math.Float32bits(float32(v32)))
					case FP64:
						want = le.AppendUint64(want, math.Float64bits(v))
					default:
						h, ok := Float64ToHalf(v)
						if !ok {
							t.Fatalf("%s out of FP16 range", s)
						}
						want = le.AppendUint16(want, h)
					}
				default:
					lo, hi := intRange(dt)
					size := sizeOf(dt)
					var u uint64
					if dt == UINT64 {
						u = rng.Uint64()
						s = strconv.FormatUint(u, 10)
					} else {
						v := int64(rng.Uint64()) // INT64: any
						if dt != INT64 {
							v = lo + rng.Int64N(hi-lo+1)
						}
						if rng.IntN(3) == 0 { // a small value, to write it as 7.0 or 7e0 too
							v = max(lo, min(hi, int64(rng.IntN(200)-50)))
							s = strconv.FormatInt(v, 10) + []string{"", ".0", "e0"}[rng.IntN(3)]
						} else {
							s = strconv.FormatInt(v, 10)
						}
						u = uint64(v)
					}
					switch size {
					case 1:
						want = append(want, byte(u))
					case 2:
						want = le.AppendUint16(want, uint16(u))
					case 4:
						want = le.AppendUint32(want, uint32(u))
					default:
						want = le.AppendUint64(want, u)
					}
				}
				texts[i] = s
			}
			flat := "[" + strings.Join(texts, ", ") + "]"
			var nested strings.Builder
			nested.WriteByte('[')
			for a := range shape[0] {
				if a > 0 {
					nested.WriteByte(',')
				}
				nested.WriteString("[ ")
				for b := range shape[1] {
					if b > 0 {
						nested.WriteString(" ,")
					}
					row := texts[(a*shape[1]+b)*shape[2] : (a*shape[1]+b+1)*shape[2]]
					nested.WriteString("[" + strings.Join(row, ",") + "]")
				}
				nested.WriteString(" ]")
			}
			nested.WriteByte(']')
			sh := string(appendShape(nil, shape))
			for _, body := range []string{
				`{"inputs":[{"name":"x","datatype":"` + dt + `","shape":` + sh + `,"data":` + flat + `}]}`,
				`{"inputs":[{"name":"x","datatype":"` + dt + `","shape":` + sh + `,"data":` + nested.String() + `}]}`,
				"{\"inputs\" : [ {\n\"data\" : " + nested.String() + ",\t\"shape\" : " + sh + " , \"datatype\" : \"" + dt + "\", \"name\":\"x\" } ] }",
			} {
				r := parse(t, body, -1)
				if got := r.Inputs[0].Data; !bytes.Equal(got, want) {
					t.Fatalf("%s\nbytes % x\nwant  % x", body, got, want)
				}
			}
		}
	}
}

// TestParseLimits checks the refusals that bound a parse's memory and
// time, and the JSON the first pass refuses.
func TestParseLimits(t *testing.T) {
	deep := strings.Repeat("[", maxRank) + "0" + strings.Repeat("]", maxRank)
	rank := func(n int) string { return "[" + strings.Repeat("1,", n-1) + "1]" }
	for _, tc := range []struct {
		name, body, msg string
		sentinel        error
	}{
		// Shapes against the bytes of their data, before allocating.
		{"shape too big for the data", `{"inputs":[{"name":"x","datatype":"FP32","shape":[1000000000],"data":[1,2,3]}]}`, `input "x": data array is too short for shape [1000000000]: its 7 bytes hold at most 3 elements, the shape needs 1000000000`, nil},
		{"nested shape too big for the data", `{"inputs":[{"name":"x","datatype":"FP32","shape":[1000000,1000],"data":[[1],[2]]}]}`, `input "x": data array is too short for shape [1000000,1000]: its 9 bytes hold at most 4 elements, the shape needs 1000000000`, nil},
		{"empty data for a scalar", `{"inputs":[{"name":"x","datatype":"FP32","shape":[],"data":[]}]}`, `input "x": data array is too short for shape []: its 2 bytes hold at most 0 elements, the shape needs 1`, nil},
		{"nested row too long", `{"inputs":[{"name":"x","datatype":"FP32","shape":[2,2],"data":[[1,2,3,4],[5,6]]}]}`, `input "x": data nesting does not match shape [2,2]: data[0] has 4 elements, expected 2`, nil},
		{"nested too many rows", `{"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[[1,2],[3,4]]}]}`, `input "x": data nesting does not match shape [1,2]: data has 2 elements, expected 1`, nil},
		{"nested deeper on a later row", `{"inputs":[{"name":"x","datatype":"FP32","shape":[2,1],"data":[[1],[[2]]]}]}`, `input "x": data element 1 is an array, expected a number for FP32`, nil},
		// Rank and depth.
		{"rank at the limit", `{"inputs":[{"name":"x","datatype":"FP32","shape":` + rank(maxRank) + `,"data":` + deep + `}],"outputs":"x"}`, `"outputs" must be an array, got string`, nil},
		{"rank over the limit", `{"inputs":[{"name":"x","datatype":"FP32","shape":` + rank(maxRank+1) + `,"data":[1]}]}`, `input "x": shape has 65 dimensions, at most 64 are supported`, nil},
		{"too deep", `{"inputs":[{"name":"x","extra":` + strings.Repeat("[", 126) + strings.Repeat("]", 126) + `}]}`, "malformed request JSON: cannot parse JSON: arrays and objects nested deeper than 128 levels at offset 156", ErrInvalidJSON},
		// Strings are checked strictly.
		{"control character", "{\"id\":\"a\tb\",\"inputs\":[]}", `malformed request JSON: cannot parse JSON: control character in string (escape it) at offset 8: "\tb\",\"inputs\":[]}"`, ErrInvalidJSON},
		{"bad escape", `{"id":"a\qb","inputs":[]}`, `malformed request JSON: cannot parse JSON: invalid escape in string at offset 8: "\\qb\",\"inputs\":[]}"`, ErrInvalidJSON},
		{"short unicode escape", `{"id":"\u12","inputs":[]}`, `malformed request JSON: cannot parse JSON: expected four hex digits after \u in string at offset 7...`, ErrInvalidJSON},
		{"unterminated string", `{"id":"abc`, `malformed request JSON: cannot parse JSON: unterminated string at offset 6: "\"abc"`, ErrInvalidJSON},
		{"trailing comma", `{"inputs":[1,]}`, `malformed request JSON: cannot parse JSON: unexpected character, expected a value at offset 13: "]}"`, ErrInvalidJSON},
		{"missing colon", `{"inputs" []}`, `malformed request JSON: cannot parse JSON: expected ':' after object key at offset 10: "[]}"`, ErrInvalidJSON},
		{"bare word", `{"inputs":[yes]}`, `malformed request JSON: cannot parse JSON: unexpected character, expected a value at offset 11: "yes]}"`, ErrInvalidJSON},
		// Messages quote at most 64 bytes of a name.
		{"long name", `{"inputs":[{"name":"` + strings.Repeat("n", 1000) + `"}]}`, `input "` + strings.Repeat("n", 64) + `"... has no "datatype": expected one of BOOL, ...`, nil},
		{"long datatype", `{"inputs":[{"name":"x","datatype":"` + strings.Repeat("d", 1000) + `"}]}`, `input "x": unsupported datatype "` + strings.Repeat("d", 64) + `"...: expected one of BOOL, ...`, ErrUnsupportedDatatype},
		{"long number", `{"inputs":[{"name":"x","datatype":"FP32","shape":[` + strings.Repeat("9", 1000) + `]}]}`, `input "x": shape[0] got ` + strings.Repeat("9", 40) + `...: expected a whole number >= 0`, nil},
		// Escaped keys count; the first of a repeated key wins, as with
		// fastjson.
		{"escaped keys", `{"in\u0070uts":[{"n\u0061me":"x","datatype":"FP32","shape":[1],"data":["a"]}]}`, `input "x": data element 0 is a string, expected a number for FP32`, nil},
		{"repeated key", `{"inputs":[{"name":"x","datatype":"FP32","shape":[2],"data":[1,2],"data":"no"}],"inputs":7,"id":1,"id":"a"}`, `"id" must be a string, got number`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkBadRequest(t, []byte(tc.body), -1, tc.msg, tc.sentinel)
		})
	}
	// At the limits, and escapes decoded.
	r := parse(t, `{"id":"\ud83d\ude00 \ud800 \u00e9\/","inputs":[{"name":"x","datatype":"FP32","shape":`+rank(maxRank)+`,"data":`+deep+`}]}`, -1)
	if r.ID != "\U0001F600 \uFFFD é/" || len(r.Inputs[0].Shape) != maxRank || !bytes.Equal(r.Inputs[0].Data, f32bytes(0)) {
		t.Errorf("got id %q, %+v", r.ID, r.Inputs[0])
	}
}

// TestParseManyNames checks repeated names past the first 64, where
// they are found by sorting: the message is the one the linear check
// gives, the first repeat and the first of its name.
func TestParseManyNames(t *testing.T) {
	var ins, outs []string
	for i := range 200 {
		ins = append(ins, `{"name":"i`+itoa(i%150)+`","datatype":"UINT8","shape":[1],"data":[1]}`)
		outs = append(outs, `{"name":"o`+itoa(i%170)+`"}`)
	}
	unique := `{"inputs":[` + strings.Join(ins[:150], ",") + `],"outputs":[` + strings.Join(outs[:170], ",") + `]}`
	if r := parse(t, unique, -1); len(r.Inputs) != 150 || len(r.Outputs) != 170 {
		t.Fatalf("%d inputs, %d outputs", len(r.Inputs), len(r.Outputs))
	}
	checkBadRequest(t, []byte(`{"inputs":[`+strings.Join(ins, ",")+`]}`), -1, `input "i0" appears twice (inputs[0] and inputs[150])`, nil)
	checkBadRequest(t, []byte(`{"inputs":[`+strings.Join(ins[:150], ",")+`],"outputs":[`+strings.Join(outs, ",")+`]}`), -1, `output "o0" is requested twice (outputs[0] and outputs[170])`, nil)
	// A later name repeating an earlier one beats an earlier name
	// repeated later.
	names := append(append([]string{}, outs[:100]...), `{"name":"o99"}`, `{"name":"o5"}`)
	checkBadRequest(t, []byte(`{"inputs":[`+ins[0]+`],"outputs":[`+strings.Join(names, ",")+`]}`), -1, `output "o99" is requested twice (outputs[99] and outputs[100])`, nil)
}

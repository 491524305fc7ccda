package kserve

import (
	"encoding/json"
	"errors"
	"testing"
)

// FuzzParseInferRequest feeds arbitrary bodies and header lengths to the
// parser: it must never panic, every error must be a 4xx, and what it
// accepts must be self-consistent and encode back to valid JSON. Seeds in
// testdata/fuzz/FuzzParseInferRequest: JSON, nested, binary, truncated.
func FuzzParseInferRequest(f *testing.F) {
	var r InferRequest // reused across runs, as a server would
	f.Fuzz(func(t *testing.T, body []byte, headerLen int) {
		err := ParseInferRequest(&r, body, headerLen)
		if err != nil {
			var sc interface{ StatusCode() int }
			if !errors.As(err, &sc) {
				t.Fatalf("error without a status code: %v", err)
			}
			if c := sc.StatusCode(); c < 400 || c > 499 {
				t.Fatalf("status %d: %v", c, err)
			}
			return
		}
		if len(r.Inputs) == 0 {
			t.Fatal("accepted a request without inputs")
		}
		total := 0
		for i := range r.Inputs {
			in := &r.Inputs[i]
			n, err := in.Elements()
			size, ok := DatatypeSize(in.Datatype)
			if err != nil || !ok || int64(len(in.Data)) != n*int64(size) {
				t.Fatalf("input %q: %d bytes for shape %v of %s (%v)", in.Name, len(in.Data), in.Shape, in.Datatype, err)
			}
			for j := range i {
				if r.Inputs[j].Name == in.Name {
					t.Fatalf("duplicate input %q accepted", in.Name)
				}
			}
			total += len(in.Data)
		}
		// Encoding what was parsed gives valid JSON, as JSON data and as
		// binary data.
		resp := &InferResponse{ModelName: "m", ID: r.ID, Outputs: r.Inputs}
		out, hl := AppendInferResponse(nil, resp)
		if hl != len(out) || !json.Valid(out) {
			t.Fatalf("JSON response invalid: %s", out)
		}
		resp.BinaryOut = make([]bool, len(r.Inputs))
		for i := range resp.BinaryOut {
			resp.BinaryOut[i] = true
		}
		out, hl = AppendInferResponse(out[:0], resp)
		if !json.Valid(out[:hl]) || len(out) != hl+total {
			t.Fatalf("binary response: header %d of %d bytes, %d data bytes: %s", hl, len(out), total, out[:hl])
		}
	})
}

package kserve

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime/metrics"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseInferRequest feeds arbitrary bodies and header lengths to the
// parser: it must never panic, every error must be a 4xx, what it accepts
// must be self-consistent and encode back to valid JSON, and no parse may
// allocate much more than 4 bytes per byte of body. Seeds in
// testdata/fuzz/FuzzParseInferRequest: JSON, nested, binary, truncated,
// members out of order, too deep, shapes too big for their data.
//
// The allocation is read from runtime/metrics (a microsecond, where
// ReadMemStats stops the world for tens): it counts small objects when a
// per-P span cache is flushed, so it may be off by a few spans either way,
// hence a slack of 1 MiB rather than the 64 KiB that
// TestParseAllocationBound holds exactly. Either catches a parse that
// allocates by what a body declares rather than by what it holds.
func FuzzParseInferRequest(f *testing.F) {
	var r InferRequest // reused across runs, as a server would
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	f.Fuzz(func(t *testing.T, body []byte, headerLen int) {
		metrics.Read(sample)
		before := sample[0].Value.Uint64()
		err := ParseInferRequest(&r, body, headerLen)
		metrics.Read(sample)
		if got, bound := sample[0].Value.Uint64()-before, 4*uint64(len(body))+1<<20; got > bound {
			t.Fatalf("allocated %d bytes for a %d-byte body, bound %d", got, len(body), bound)
		}
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

type fuzzSeed struct {
	name string
	body []byte
	hl   int
}

// fuzzSeeds reads the FuzzParseInferRequest corpus in testdata/fuzz
// (the "go test fuzz v1" format: a []byte and an int literal).
func fuzzSeeds(t *testing.T) []fuzzSeed {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzParseInferRequest", "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no seeds: %v", err)
	}
	var seeds []fuzzSeed
	for _, file := range files {
		text, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(text)), "\n")
		if len(lines) != 3 || lines[0] != "go test fuzz v1" {
			t.Fatalf("%s: not a two-value corpus file", file)
		}
		body, err1 := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		hl, err2 := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(lines[2], "int("), ")"))
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: %v %v", file, err1, err2)
		}
		seeds = append(seeds, fuzzSeed{filepath.Base(file), []byte(body), hl})
	}
	return seeds
}

package server

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/inferd/inferd/config"
)

// classificationRequest asks for "output" with parameters.classification
// n (tritonclient's InferRequestedOutput("output", class_count=n)); binary
// sends the input and asks for the output in the binary tensor extension.
func classificationRequest(rows int, data []float32, n int, bin bool) ([]byte, int) {
	body, hlen := binaryInfer(rows, data, false)
	var hdr map[string]any
	if err := json.Unmarshal(body[:hlen], &hdr); err != nil {
		panic(err)
	}
	hdr["outputs"] = []any{map[string]any{"name": "output", "parameters": map[string]any{"classification": n, "binary_data": bin}}}
	h, _ := json.Marshal(hdr)
	return append(h, body[hlen:]...), len(h)
}

// deserializeBytesTensor decodes BYTES binary data as tritonclient's
// deserialize_bytes_tensor does: a 4-byte little-endian length, that many
// bytes, repeated to the end.
func deserializeBytesTensor(t *testing.T, b []byte) []string {
	t.Helper()
	var out []string
	for len(b) > 0 {
		if len(b) < 4 {
			t.Fatalf("BYTES data: %d stray bytes", len(b))
		}
		n := binary.LittleEndian.Uint32(b)
		if uint64(n) > uint64(len(b)-4) {
			t.Fatalf("BYTES element of %d bytes overruns the %d left", n, len(b)-4)
		}
		out = append(out, string(b[4:4+n]))
		b = b[4+n:]
	}
	return out
}

// Triton's classification extension over HTTP: the top N of each row as
// "value:index[:label]" BYTES of shape [rows, N], in JSON and in binary,
// ranked and valued as the plain output, labelled where the labels file
// has a line.
func TestInferClassification(t *testing.T) {
	labels := filepath.Join(t.TempDir(), "labels.txt")
	var lines []string
	for i := range 500 { // half the classes: the rest come back unlabelled
		lines = append(lines, fmt.Sprintf("class %d", i))
	}
	if err := os.WriteFile(labels, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ts := start(t, tinyConfig(func(c *config.Config) { c.Models[0].Labels = labels }))
	const rows = 2
	in := floats(rows*3*224*224, 0.3)

	var plain inferResponse
	body, hlen := binaryInfer(rows, in, false)
	ts.do(t, "POST", "/v2/models/tiny/infer", "application/octet-stream", body, headerInferenceLength, strconv.Itoa(hlen)).json(t, &plain)
	if len(plain.Outputs) != 1 || len(plain.Outputs[0].Shape) != 2 {
		t.Fatalf("plain infer: %+v", plain)
	}
	classes := int(plain.Outputs[0].Shape[1])
	scores := plain.Outputs[0].Data

	// want is row r's top n as Triton writes them: by raw value, highest
	// first, the value as std::to_string prints it.
	want := func(r, n int) []string {
		row := scores[r*classes : (r+1)*classes]
		idx := make([]int, classes)
		for i := range idx {
			idx[i] = i
		}
		slices.SortStableFunc(idx, func(a, b int) int {
			switch {
			case row[a] > row[b]:
				return -1
			case row[a] < row[b]:
				return 1
			}
			return 0
		})
		var s []string
		for _, i := range idx[:n] {
			e := fmt.Sprintf("%f:%d", row[i], i)
			if i < 500 {
				e += fmt.Sprintf(":class %d", i)
			}
			s = append(s, e)
		}
		return s
	}

	type bytesOutput struct {
		Name       string
		Datatype   string
		Shape      []int64
		Data       []string
		Parameters struct {
			BinaryDataSize int `json:"binary_data_size"`
		}
	}
	for _, c := range []struct {
		name   string
		n, got int // requested, and what comes back
		bin    bool
	}{
		{"JSON", 5, 5, false},
		{"binary", 5, 5, true},
		{"beyond the classes, clamped as Triton does", 100000, classes, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			body, hlen := classificationRequest(rows, in, c.n, c.bin)
			r := ts.do(t, "POST", "/v2/models/tiny/infer", "application/octet-stream", body, headerInferenceLength, strconv.Itoa(hlen))
			if r.code != 200 {
				t.Fatalf("status %d: %s", r.code, r.body)
			}
			hl := len(r.body)
			if h := r.header.Get(headerInferenceLength); h != "" {
				hl, _ = strconv.Atoi(h)
			}
			if c.bin == (hl == len(r.body)) {
				t.Fatalf("binary %v but header length %d of %d", c.bin, hl, len(r.body))
			}
			var resp struct{ Outputs []bytesOutput }
			if err := json.Unmarshal(r.body[:hl], &resp); err != nil {
				t.Fatalf("%v: %s", err, r.body[:hl])
			}
			o := resp.Outputs[0]
			if o.Name != "output" || o.Datatype != "BYTES" || !slices.Equal(o.Shape, []int64{rows, int64(c.got)}) {
				t.Fatalf("output %s %s %v, want BYTES [%d,%d]", o.Name, o.Datatype, o.Shape, rows, c.got)
			}
			got := o.Data
			if c.bin {
				if o.Parameters.BinaryDataSize != len(r.body)-hl || got != nil {
					t.Fatalf("binary_data_size %d, %d bytes follow the header", o.Parameters.BinaryDataSize, len(r.body)-hl)
				}
				got = deserializeBytesTensor(t, r.body[hl:])
			}
			if len(got) != rows*c.got {
				t.Fatalf("%d elements, want %d", len(got), rows*c.got)
			}
			for row := range rows {
				w := want(row, c.got)
				for i, e := range got[row*c.got : (row+1)*c.got] {
					if e != w[i] {
						t.Fatalf("row %d element %d: %q, want %q (from the plain output)", row, i, e, w[i])
					}
					// The form tritonclient users split: value, index, label.
					f := strings.SplitN(e, ":", 3)
					if _, err := strconv.ParseFloat(f[0], 32); err != nil {
						t.Errorf("%q: value: %v", e, err)
					}
					if _, err := strconv.Atoi(f[1]); err != nil {
						t.Errorf("%q: index: %v", e, err)
					}
				}
			}
		})
	}

	// A class count on an output it does not fit, and a negative one.
	body, _ = json.Marshal(map[string]any{
		"inputs":  []any{map[string]any{"name": "input", "datatype": "FP32", "shape": []int{1, 3, 224, 224}, "data": floats(3*224*224, 0)}},
		"outputs": []any{map[string]any{"name": "output", "parameters": map[string]any{"classification": -1}}},
	})
	ts.do(t, "POST", "/v2/models/tiny/infer", "application/json", body).wantError(t, 400, "classification")
}

// A logits model's classification reports the logits themselves, as
// Triton does, not the softmax that /classify applies (softmax: auto).
func TestInferClassificationRawValues(t *testing.T) {
	ts := start(t, tinyConfig(func(c *config.Config) { c.Models[0].Path = "builtin:tiny-logits" }))
	in := floats(3*224*224, 0.7)
	var plain inferResponse
	body, hlen := binaryInfer(1, in, false)
	ts.do(t, "POST", "/v2/models/tiny/infer", "application/octet-stream", body, headerInferenceLength, strconv.Itoa(hlen)).json(t, &plain)
	scores := plain.Outputs[0].Data
	top := slices.Index(scores, slices.Max(scores))
	if slices.Min(scores) >= 0 {
		t.Fatalf("tiny-logits gave no negative logit: not logits?")
	}
	var resp struct{ Outputs []struct{ Data []string } }
	body, hlen = classificationRequest(1, in, 1, false)
	ts.do(t, "POST", "/v2/models/tiny/infer", "application/octet-stream", body, headerInferenceLength, strconv.Itoa(hlen)).json(t, &resp)
	if want := fmt.Sprintf("%f:%d", scores[top], top); len(resp.Outputs) != 1 || !slices.Equal(resp.Outputs[0].Data, []string{want}) {
		t.Errorf("classification %+v, want [%q]", resp.Outputs, want)
	}
}

package server

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/inferd/inferd/config"
	"github.com/inferd/inferd/gpu"
)

func TestHealthAndMetadata(t *testing.T) {
	ts := start(t, tinyConfig(nil))
	for _, c := range []struct {
		path string
		want string
	}{
		{"/v2/health/live", `{"live":true}`},
		{"/v2/health/ready", `{"ready":true}`},
		{"/v2/models/tiny/ready", `{"name":"tiny","ready":true}`},
		{"/v2/models/tiny/versions/1/ready", `{"name":"tiny","ready":true}`},
	} {
		r := ts.do(t, "GET", c.path, "", nil)
		if r.code != 200 || string(r.body) != c.want {
			t.Errorf("GET %s = %d %s, want 200 %s", c.path, r.code, r.body, c.want)
		}
		if r.header.Get("X-Inferd-Replica") == "" {
			t.Errorf("GET %s: no X-Inferd-Replica header", c.path)
		}
	}
	var sm struct {
		Name       string
		Version    string
		Extensions []string
	}
	ts.do(t, "GET", "/v2", "", nil).json(t, &sm)
	if sm.Name != "inferd" || !strings.Contains(strings.Join(sm.Extensions, ","), "binary_tensor_data") {
		t.Errorf("server metadata %+v", sm)
	}
	var mm struct {
		Name     string
		Versions []string
		Platform string
		Inputs   []struct {
			Name     string
			Datatype string
			Shape    []int64
		}
		Outputs []struct {
			Name     string
			Datatype string
			Shape    []int64
		}
	}
	ts.do(t, "GET", "/v2/models/tiny", "", nil).json(t, &mm)
	if mm.Name != "tiny" || mm.Platform != "onnxruntime_onnx" || len(mm.Inputs) != 1 || mm.Inputs[0].Datatype != "FP32" ||
		len(mm.Inputs[0].Shape) != 4 || mm.Inputs[0].Shape[0] != -1 || mm.Outputs[0].Shape[1] != 1000 {
		t.Errorf("model metadata %+v", mm)
	}
}

// The JSON and binary forms of the same request must give the same
// probabilities, and both must be a distribution per row.
func TestInferJSONAndBinaryAgree(t *testing.T) {
	ts := start(t, tinyConfig(nil))
	const rows = 3
	data := floats(rows*3*224*224, 1)

	var jr inferResponse
	r := ts.do(t, "POST", "/v2/models/tiny/infer", "application/json", jsonInfer(rows, data))
	if r.code != 200 {
		t.Fatalf("json infer: %d %s", r.code, r.body)
	}
	r.json(t, &jr)
	if jr.ID != "req-1" || jr.ModelName != "tiny" || len(jr.Outputs) != 1 || jr.Outputs[0].Name != "output" ||
		len(jr.Outputs[0].Data) != rows*1000 || jr.Outputs[0].Shape[0] != rows || jr.Outputs[0].Shape[1] != 1000 {
		t.Fatalf("json response: id %q model %q outputs %d", jr.ID, jr.ModelName, len(jr.Outputs))
	}
	for row := range rows {
		sum := 0.0
		for _, v := range jr.Outputs[0].Data[row*1000 : (row+1)*1000] {
			sum += float64(v)
		}
		if math.Abs(sum-1) > 1e-3 {
			t.Errorf("row %d sums to %g", row, sum)
		}
	}

	// The same rows run directly on a session of the same model.
	direct := directRun(t, ts.model("tiny").Path, rows, data)
	for i, want := range direct {
		if got := jr.Outputs[0].Data[i]; math.Abs(float64(got-want)) > 1e-6 {
			t.Fatalf("element %d: server %g, gpu directly %g", i, got, want)
		}
	}

	body, hlen := binaryInfer(rows, data, true)
	r = ts.do(t, "POST", "/v2/models/tiny/versions/1/infer", "application/octet-stream", body,
		"Inference-Header-Content-Length", strconv.Itoa(hlen))
	if r.code != 200 {
		t.Fatalf("binary infer: %d %s", r.code, r.body)
	}
	n, err := strconv.Atoi(r.header.Get("Inference-Header-Content-Length"))
	if err != nil {
		t.Fatalf("binary response without Inference-Header-Content-Length: %v", r.header)
	}
	var br inferResponse
	response{body: r.body[:n]}.json(t, &br)
	raw := r.body[n:]
	if len(raw) != rows*1000*4 {
		t.Fatalf("binary output is %d bytes, want %d", len(raw), rows*1000*4)
	}
	for i, want := range jr.Outputs[0].Data {
		got := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		if math.Abs(float64(got-want)) > 1e-6 {
			t.Fatalf("element %d: binary %g, json %g", i, got, want)
		}
	}
}

func TestClassifyAndRecognize(t *testing.T) {
	ts := start(t, tinyConfig(nil))
	img := pngImage(t, 300, 200, 7)
	var cr classifyResponse
	r := ts.do(t, "POST", "/v2/models/tiny/classify?top_k=4", "image/png", img)
	if r.code != 200 {
		t.Fatalf("classify: %d %s", r.code, r.body)
	}
	r.json(t, &cr)
	if cr.Model != "tiny" || len(cr.Predictions) != 4 {
		t.Fatalf("classify response %s", r.body)
	}
	for i, p := range cr.Predictions {
		if p.Label != strconv.Itoa(p.Index) || p.Probability <= 0 || p.Probability >= 1 {
			t.Errorf("prediction %d: %+v", i, p)
		}
		if i > 0 && p.Probability > cr.Predictions[i-1].Probability {
			t.Errorf("predictions not sorted: %s", r.body)
		}
	}
	// The same image as a multipart field gives the same answer.
	ct, body := multipartImage(t, "image", img)
	var cr2 struct {
		Predictions []struct{ Index int }
	}
	ts.do(t, "POST", "/v2/models/tiny/classify?top_k=4", ct, body).json(t, &cr2)
	if len(cr2.Predictions) != 4 || cr2.Predictions[0].Index != cr.Predictions[0].Index {
		t.Errorf("multipart classify differs: %+v vs %+v", cr2, cr)
	}
	var rec []struct {
		Label       string
		Probability float64
	}
	r = ts.do(t, "POST", "/recognize", ct, body)
	r.json(t, &rec)
	if r.code != 200 || len(rec) != 3 || rec[0].Label != strconv.Itoa(cr.Predictions[0].Index) {
		t.Errorf("recognize: %d %s", r.code, r.body)
	}
}

// Every kind of bad input gets its status and a JSON error that says what
// was wrong; the server keeps serving afterwards.
func TestBadInput(t *testing.T) {
	ts := start(t, tinyConfig(func(c *config.Config) { c.Server.MaxBodyBytes = 8 << 20 }))
	good := jsonInfer(1, floats(3*224*224, 0))
	nine, nineLen := binaryInfer(9, floats(9*3*224*224, 0), false)
	bin, hlen := binaryInfer(1, floats(3*224*224, 0), false)
	cases := []struct {
		name, method, path, ctype string
		body                      []byte
		headers                   []string
		code                      int
		want                      string
	}{
		{"malformed json", "POST", "/v2/models/tiny/infer", "application/json", []byte(`{"inputs": [`), nil, 400, ""},
		{"wrong input name", "POST", "/v2/models/tiny/infer", "", []byte(strings.Replace(string(good), `"name":"input"`, `"name":"images"`, 1)), nil, 400, `no input "images"`},
		{"wrong datatype", "POST", "/v2/models/tiny/infer", "", []byte(`{"inputs":[{"name":"input","datatype":"INT64","shape":[1,1],"data":[1]}]}`), nil, 400, "datatype INT64"},
		{"wrong shape", "POST", "/v2/models/tiny/infer", "", []byte(`{"inputs":[{"name":"input","datatype":"FP32","shape":[1,3,2,2],"data":[1,2,3,4,5,6,7,8,9,10,11,12]}]}`), nil, 400, "shape [1 3 2 2]"},
		{"data length not matching shape", "POST", "/v2/models/tiny/infer", "", []byte(`{"inputs":[{"name":"input","datatype":"FP32","shape":[1,3,224,224],"data":[1,2,3]}]}`), nil, 400, ""},
		{"batch over max_batch", "POST", "/v2/models/tiny/infer", "", nine, []string{"Inference-Header-Content-Length", strconv.Itoa(nineLen)}, 400, "batch size 9"},
		{"bad binary header length", "POST", "/v2/models/tiny/infer", "", bin, []string{"Inference-Header-Content-Length", strconv.Itoa(len(bin) + 10)}, 400, ""},
		{"non-numeric binary header", "POST", "/v2/models/tiny/infer", "", bin, []string{"Inference-Header-Content-Length", "abc"}, 400, "Inference-Header-Content-Length"},
		{"binary sizes not summing", "POST", "/v2/models/tiny/infer", "", bin[:len(bin)-4], []string{"Inference-Header-Content-Length", strconv.Itoa(hlen)}, 400, ""},
		{"unknown model", "GET", "/v2/models/nope", "", nil, nil, 404, `unknown model "nope"`},
		{"unknown version", "GET", "/v2/models/tiny/versions/7", "", nil, nil, 404, `no version "7"`},
		{"unknown route", "GET", "/v3/things", "", nil, nil, 404, "no route"},
		{"wrong method", "GET", "/v2/models/tiny/infer", "", nil, nil, 405, "use POST"},
		{"not an image", "POST", "/v2/models/tiny/classify", "image/png", []byte("hello, not a picture"), nil, 415, ""},
		{"truncated png", "POST", "/v2/models/tiny/classify", "image/png", pngImage(t, 64, 64, 1)[:100], nil, 415, ""},
		{"empty image body", "POST", "/v2/models/tiny/classify", "image/png", nil, nil, 400, "empty body"},
		{"bad top_k", "POST", "/v2/models/tiny/classify?top_k=0", "image/png", pngImage(t, 8, 8, 1), nil, 400, "top_k"},
		{"recognize without multipart", "POST", "/recognize", "image/png", pngImage(t, 8, 8, 1), nil, 400, "multipart"},
		{"decompression bomb", "POST", "/v2/models/tiny/classify", "image/png", bombPNG(), nil, 415, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ts.do(t, c.method, c.path, c.ctype, c.body, c.headers...).wantError(t, c.code, c.want)
		})
	}
	// A body over the limit is refused from its Content-Length, before the
	// server reads it beyond fasthttp's first read of up to 8 KiB (a raw
	// connection: a client still sending the body would see the connection
	// close before the answer).
	t.Run("body over the limit", func(t *testing.T) {
		conn, err := ts.dial()
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST /v2/models/tiny/infer HTTP/1.1\r\nHost: inferd\r\nContent-Length: %d\r\n\r\n{%s", 9<<20, strings.Repeat(" ", 8<<10))
		var resp fasthttp.Response
		if err := resp.Read(bufio.NewReader(conn)); err != nil {
			t.Fatal(err)
		}
		response{code: resp.StatusCode(), body: resp.Body()}.wantError(t, 413, "max_body_bytes")
	})
	// Still serving.
	if r := ts.do(t, "POST", "/v2/models/tiny/infer", "", good); r.code != 200 {
		t.Fatalf("after bad input: %d %s", r.code, r.body)
	}
}

// directRun runs rows through gpu.Open on path, bypassing the server.
func directRun(t *testing.T, path string, rows int, data []float32) []float32 {
	m, err := gpu.Open(path, gpu.Options{MaxBatch: rows, Buckets: []int{rows}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	l, err := m.Acquire(rows)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	in := l.Input(0)
	for i, v := range data {
		binary.LittleEndian.PutUint32(in[4*i:], math.Float32bits(v))
	}
	if err := l.Run(); err != nil {
		t.Fatal(err)
	}
	out := make([]float32, rows*1000)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(l.Output(0)[4*i:]))
	}
	return out
}

// bombPNG is a PNG whose header claims 100000x100000 pixels (40 GB decoded)
// followed by nothing: it must be refused before any decoding.
func bombPNG() []byte {
	b := []byte("\x89PNG\r\n\x1a\n")
	ihdr := []byte("IHDR")
	ihdr = binary.BigEndian.AppendUint32(ihdr, 100000)
	ihdr = binary.BigEndian.AppendUint32(ihdr, 100000)
	ihdr = append(ihdr, 8, 6, 0, 0, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(len(ihdr)-4))
	b = append(b, ihdr...)
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(ihdr))
}

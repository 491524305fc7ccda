package server

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/inferd/inferd/config"
)

// codec compresses and decompresses one Content-Encoding.
type codec struct {
	name   string
	writer func(io.Writer) io.WriteCloser
	reader func(io.Reader) (io.Reader, error)
}

var (
	gzipCodec = codec{"gzip", func(w io.Writer) io.WriteCloser { return gzip.NewWriter(w) },
		func(r io.Reader) (io.Reader, error) { return gzip.NewReader(r) }}
	zlibCodec = codec{"deflate", func(w io.Writer) io.WriteCloser { return zlib.NewWriter(w) },
		func(r io.Reader) (io.Reader, error) { return zlib.NewReader(r) }}
)

func (c codec) encode(t testing.TB, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	w := c.writer(&out)
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func (c codec) decode(t testing.TB, b []byte) []byte {
	t.Helper()
	r, err := c.reader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	return out
}

func gzipBytes(t testing.TB, b []byte) []byte { return gzipCodec.encode(t, b) }

// Triton's client compresses the whole body (JSON header and binary
// tensors) and keeps Inference-Header-Content-Length at the uncompressed
// header's length: the answer must equal the uncompressed request's.
func TestCompressedRequestBodies(t *testing.T) {
	ts := start(t, tinyConfig(nil))
	data := floats(2*3*224*224, 0.3)
	bin, hlen := binaryInfer(2, data, true)
	plainBin := ts.do(t, "POST", "/v2/models/tiny/infer", "application/octet-stream", bin, headerInferenceLength, strconv.Itoa(hlen))
	js := jsonInfer(2, data)
	plainJSON := ts.do(t, "POST", "/v2/models/tiny/infer", "application/json", js)
	if plainBin.code != 200 || plainJSON.code != 200 {
		t.Fatalf("uncompressed: %d %s / %d %s", plainBin.code, plainBin.body, plainJSON.code, plainJSON.body)
	}
	for _, c := range []struct {
		coding string
		enc    func(testing.TB, []byte) []byte
	}{{"gzip", gzipCodec.encode}, {"x-gzip", gzipCodec.encode}, {"deflate", zlibCodec.encode}, {"identity", func(_ testing.TB, b []byte) []byte { return b }}} {
		r := ts.do(t, "POST", "/v2/models/tiny/infer", "application/octet-stream", c.enc(t, bin),
			headerInferenceLength, strconv.Itoa(hlen), "Content-Encoding", c.coding)
		if r.code != 200 || !bytes.Equal(r.body, plainBin.body) {
			t.Errorf("binary request in %s: %d, body equal to the uncompressed answer: %v (%.200s)", c.coding, r.code, bytes.Equal(r.body, plainBin.body), r.body)
		}
		r = ts.do(t, "POST", "/v2/models/tiny/infer", "application/json", c.enc(t, js), "Content-Encoding", c.coding)
		if r.code != 200 || !bytes.Equal(r.body, plainJSON.body) {
			t.Errorf("JSON request in %s: %d (%.200s)", c.coding, r.code, r.body)
		}
	}
	// The image endpoint takes compressed bodies too.
	img := pngImage(t, 64, 48, 7)
	plain := ts.do(t, "POST", "/v2/models/tiny/classify", "image/png", img)
	gz := ts.do(t, "POST", "/v2/models/tiny/classify", "image/png", gzipBytes(t, img), "Content-Encoding", "gzip")
	if plain.code != 200 || gz.code != 200 || !bytes.Equal(plain.body, gz.body) {
		t.Errorf("classify: plain %d %s, gzip %d %s", plain.code, plain.body, gz.code, gz.body)
	}
}

// A bad coding is the client's error, said clearly; a body that would
// decompress past max_body_bytes is refused whatever its compressed size;
// the server goes on serving.
func TestBadCompressedBodies(t *testing.T) {
	ts := start(t, tinyConfig(func(c *config.Config) { c.Server.MaxBodyBytes = 8 << 20 }))
	js := jsonInfer(1, floats(3*224*224, 0.1))
	ts.do(t, "POST", "/v2/models/tiny/infer", "application/json", js, "Content-Encoding", "br").
		wantError(t, 415, `Content-Encoding "br" is not supported`)
	ts.do(t, "POST", "/v2/models/tiny/infer", "application/json", js, "Content-Encoding", "gzip").
		wantError(t, 400, "not gzip data")
	ts.do(t, "POST", "/v2/models/tiny/infer", "application/json", js, "Content-Encoding", "deflate").
		wantError(t, 400, "not zlib data")
	truncated := gzipBytes(t, js)
	ts.do(t, "POST", "/v2/models/tiny/infer", "application/json", truncated[:len(truncated)/2], "Content-Encoding", "gzip").
		wantError(t, 400, "corrupt body")
	bomb := gzipBytes(t, make([]byte, 64<<20)) // 64 MiB of zeros in about 64 KiB
	if len(bomb) > 1<<20 {
		t.Fatalf("bomb is %d bytes compressed", len(bomb))
	}
	ts.do(t, "POST", "/v2/models/tiny/infer", "application/json", bomb, "Content-Encoding", "gzip").
		wantError(t, 413, "once decompressed")
	if r := ts.do(t, "POST", "/v2/models/tiny/infer", "application/json", gzipBytes(t, js), "Content-Encoding", "gzip"); r.code != 200 {
		t.Errorf("after the bad bodies: %d %s", r.code, r.body)
	}
}

// Responses of 1 KiB or more are compressed when Accept-Encoding allows;
// small ones, refused codings and response_compression: off are not.
func TestCompressedResponses(t *testing.T) {
	ts := start(t, tinyConfig(nil))
	js := jsonInfer(1, floats(3*224*224, 0.2))
	plain := ts.do(t, "POST", "/v2/models/tiny/infer", "application/json", js)
	if plain.code != 200 || len(plain.body) < compressMinBytes || plain.header.Get("Content-Encoding") != "" {
		t.Fatalf("plain: %d, %d bytes, Content-Encoding %q", plain.code, len(plain.body), plain.header.Get("Content-Encoding"))
	}
	for _, c := range []struct {
		accept, want string
	}{
		{"gzip", "gzip"}, {"gzip, deflate, br", "gzip"}, {"deflate", "deflate"}, {"gzip;q=0, deflate;q=0.5", "deflate"},
		{"*", "gzip"}, {"br", ""}, {"identity", ""}, {"gzip;q=0", ""}, {"*;q=0", ""},
	} {
		r := ts.do(t, "POST", "/v2/models/tiny/infer", "application/json", js, "Accept-Encoding", c.accept)
		if r.code != 200 || r.header.Get("Content-Encoding") != c.want {
			t.Errorf("Accept-Encoding %q: %d, Content-Encoding %q, want %q", c.accept, r.code, r.header.Get("Content-Encoding"), c.want)
			continue
		}
		body := r.body
		switch c.want {
		case "gzip":
			body = gzipCodec.decode(t, r.body)
		case "deflate":
			body = zlibCodec.decode(t, r.body)
		}
		if !bytes.Equal(body, plain.body) {
			t.Errorf("Accept-Encoding %q: decoded body differs from the plain one", c.accept)
		}
		if c.want != "" && len(r.body) >= len(plain.body) {
			t.Errorf("Accept-Encoding %q: %d bytes compressed, %d plain", c.accept, len(r.body), len(plain.body))
		}
	}
	// A binary answer goes out compressed only when that is smaller (the
	// tiny model's probabilities compress a little; random floats would
	// not: TestIncompressibleResponseGoesPlain).
	bin, hlen := binaryInfer(1, floats(3*224*224, 0.2), true)
	plainBin := ts.do(t, "POST", "/v2/models/tiny/infer", "application/octet-stream", bin, headerInferenceLength, strconv.Itoa(hlen))
	r := ts.do(t, "POST", "/v2/models/tiny/infer", "application/octet-stream", bin,
		headerInferenceLength, strconv.Itoa(hlen), "Accept-Encoding", "gzip")
	switch enc := r.header.Get("Content-Encoding"); {
	case r.code != 200 || plainBin.code != 200:
		t.Errorf("binary answer: %d %s", r.code, r.body)
	case enc == "gzip" && (len(r.body) >= len(plainBin.body) || !bytes.Equal(gzipCodec.decode(t, r.body), plainBin.body)):
		t.Errorf("binary answer sent gzip: %d bytes for %d plain, or a different body", len(r.body), len(plainBin.body))
	case enc == "" && !bytes.Equal(r.body, plainBin.body):
		t.Error("binary answer sent plain but different")
	}
	if r := ts.do(t, "GET", "/v2/health/ready", "", nil, "Accept-Encoding", "gzip"); r.header.Get("Content-Encoding") != "" {
		t.Errorf("a %d-byte response was compressed", len(r.body))
	}

	off := start(t, tinyConfig(func(c *config.Config) { c.Server.ResponseCompression = "off" }))
	if r := off.do(t, "POST", "/v2/models/tiny/infer", "application/json", js, "Accept-Encoding", "gzip"); r.code != 200 ||
		r.header.Get("Content-Encoding") != "" || !bytes.Equal(r.body, plain.body) {
		t.Errorf("response_compression off: %d, Content-Encoding %q", r.code, r.header.Get("Content-Encoding"))
	}
}

// A body that compression would make larger goes out as it is.
func TestIncompressibleResponseGoesPlain(t *testing.T) {
	s := &Server{compress: true}
	body := make([]byte, 4096)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range body {
		body[i] = byte(rng.Uint32())
	}
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.Set("Accept-Encoding", "gzip")
	ctx.Response.SetBody(body)
	s.encodeResponse(&ctx)
	if enc := ctx.Response.Header.ContentEncoding(); len(enc) != 0 || !bytes.Equal(ctx.Response.Body(), body) {
		t.Errorf("random bytes sent with Content-Encoding %q, %d bytes", enc, len(ctx.Response.Body()))
	}
	// The same size of compressible bytes is compressed.
	ctx.Response.SetBody(bytes.Repeat([]byte("0.001,"), 700))
	s.encodeResponse(&ctx)
	if enc := string(ctx.Response.Header.ContentEncoding()); enc != "gzip" {
		t.Errorf("compressible body sent with Content-Encoding %q", enc)
	}
}

// What compressing one ResNet50 answer costs: 1000 FP32 scores as JSON
// (the default) and in binary, gzip at BestSpeed as encodeResponse does.
func BenchmarkResponseCompression(b *testing.B) {
	scores := floats(1000, 0.5)
	for i := range scores {
		scores[i] = scores[i] * scores[i] / 1000 // probabilities-like
	}
	js, _ := json.Marshal(map[string]any{"model_name": "resnet50", "outputs": []any{map[string]any{
		"name": "output", "datatype": "FP32", "shape": []int{1, 1000}, "data": scores}}})
	raw := make([]byte, 0, 4000)
	for _, v := range scores {
		raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(v))
	}
	for _, c := range []struct {
		name string
		body []byte
	}{{"json", js}, {"binary", raw}} {
		b.Run(c.name, func(b *testing.B) {
			var out []byte
			b.SetBytes(int64(len(c.body)))
			for b.Loop() {
				out = fasthttp.AppendGzipBytesLevel(out[:0], c.body, fasthttp.CompressBestSpeed)
			}
			b.ReportMetric(float64(len(out))/float64(len(c.body)), "ratio")
		})
	}
}

package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"io"
	"log/slog"
	"math"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/inferd/inferd/config"
	"github.com/inferd/inferd/internal/testbed"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

var modelDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "inferd-server-test")
	if err != nil {
		panic(err)
	}
	modelDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func needLibrary(t testing.TB) {
	t.Helper()
	testbed.NeedORT(t)
}

// testServer is an inferd on an in-memory listener.
type testServer struct {
	*Server
	client *fasthttp.Client
	dial   func() (net.Conn, error)
}

// tinyConfig serves the tiny model as "tiny" on cpu.
func tinyConfig(mod func(*config.Config)) *config.Config {
	c, err := config.Parse([]byte(`
models:
  - name: tiny
    path: builtin:tiny
    device: cpu
    max_batch: 8
`))
	if err != nil {
		panic(err)
	}
	c.Runtime.ModelDir = modelDir
	if mod != nil {
		mod(c)
	}
	return c
}

func start(t testing.TB, cfg *config.Config) *testServer {
	t.Helper()
	ln := fasthttputil.NewInmemoryListener()
	s := serveOn(t, cfg, ln)
	return &testServer{Server: s, dial: ln.Dial, client: &fasthttp.Client{
		Dial:            func(string) (net.Conn, error) { return ln.Dial() },
		MaxConnsPerHost: 512,
	}}
}

// serveOn loads cfg's models and serves them on ln until the test ends.
func serveOn(t testing.TB, cfg *config.Config, ln net.Listener) *Server {
	t.Helper()
	needLibrary(t)
	s := New(cfg, nil, quiet)
	if err := s.LoadModels(); err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := contextWithTimeout(10 * time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s
}

type response struct {
	code   int
	header http.Header
	body   []byte
}

// do sends a request and returns status, headers and body.
func (ts *testServer) do(t testing.TB, method, path, contentType string, body []byte, headers ...string) response {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI("http://inferd" + path)
	if contentType != "" {
		req.Header.SetContentType(contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	req.SetBody(body)
	if err := ts.client.DoTimeout(req, resp, 30*time.Second); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	h := http.Header{}
	resp.Header.VisitAll(func(k, v []byte) { h.Add(string(k), string(v)) })
	return response{resp.StatusCode(), h, bytes.Clone(resp.Body())}
}

func (r response) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
}

// wantError checks a status and that the JSON error says want.
func (r response) wantError(t testing.TB, code int, want string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("status %d, want %d (body %s)", r.code, code, r.body)
	}
	var e struct{ Error string }
	r.json(t, &e)
	if !strings.Contains(e.Error, want) {
		t.Errorf("error %q does not say %q", e.Error, want)
	}
}

// pngImage encodes a w x h image whose colour depends on seed.
func pngImage(t testing.TB, w, h int, seed byte) []byte {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{byte(x) + seed, byte(y) * seed, seed * 3, 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func multipartImage(t testing.TB, field string, img []byte) (string, []byte) {
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	fw, err := w.CreateFormFile(field, "image.png")
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(img)
	w.Close()
	return w.FormDataContentType(), b.Bytes()
}

func floats(n int, seed float64) []float32 {
	f := make([]float32, n)
	for i := range f {
		f[i] = float32(math.Sin(float64(i)*0.01 + seed))
	}
	return f
}

func jsonInfer(rows int, data []float32) []byte {
	b, _ := json.Marshal(map[string]any{
		"id": "req-1",
		"inputs": []any{map[string]any{
			"name": "input", "datatype": "FP32", "shape": []int{rows, 3, 224, 224}, "data": data,
		}},
	})
	return b
}

// binaryInfer builds a request the way Triton's client does: a JSON header
// with binary_data_size, then the raw little-endian tensor.
func binaryInfer(rows int, data []float32, binaryOut bool) ([]byte, int) {
	hdr := map[string]any{
		"inputs": []any{map[string]any{
			"name": "input", "datatype": "FP32", "shape": []int{rows, 3, 224, 224},
			"parameters": map[string]any{"binary_data_size": 4 * len(data)},
		}},
	}
	if binaryOut {
		hdr["outputs"] = []any{map[string]any{"name": "output", "parameters": map[string]any{"binary_data": true}}}
	}
	h, _ := json.Marshal(hdr)
	body := append([]byte{}, h...)
	for _, v := range data {
		body = binary.LittleEndian.AppendUint32(body, math.Float32bits(v))
	}
	return body, len(h)
}

// classifyResponse is the body /classify answers.
type classifyResponse struct {
	Model       string
	Predictions []struct {
		Index       int
		Label       string
		Probability float64
	}
}

type inferResponse struct {
	ModelName    string `json:"model_name"`
	ModelVersion string `json:"model_version"`
	ID           string `json:"id"`
	Outputs      []struct {
		Name       string
		Datatype   string
		Shape      []int64
		Data       []float32
		Parameters map[string]any
	}
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

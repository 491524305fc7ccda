package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/inferd/inferd/config"
	"github.com/inferd/inferd/internal/testbed"
)

// startTCP serves cfg on a loopback TCP port, for the tests that need
// client addresses (connection limits) or raw bytes on the wire.
func startTCP(t *testing.T, cfg *config.Config) (*Server, string) {
	t.Helper()
	needLibrary(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, cfg, ln), ln.Addr().String()
}

// rawExchange writes req on a new connection from local (nil: any) and
// reads one response within d.
func rawExchange(t *testing.T, addr string, local net.Addr, req string, d time.Duration) (*fasthttp.Response, error) {
	t.Helper()
	c, err := (&net.Dialer{LocalAddr: local, Timeout: d}).Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(d))
	if _, err := io.WriteString(c, req); err != nil {
		return nil, err
	}
	resp := &fasthttp.Response{}
	return resp, resp.Read(bufio.NewReader(c))
}

// Routes that take no body never read or decompress one: a gzip bomb sent
// to the liveness check costs nothing, and the check answers.
func TestNoBodyRouteIgnoresCompressedBody(t *testing.T) {
	ts := start(t, tinyConfig(nil))
	bomb := gzipBytes(t, make([]byte, 64<<20))
	ts.budget.TakePeak()
	r := ts.do(t, "GET", "/v2/health/live", "", bomb, "Content-Encoding", "gzip")
	if r.code != 200 {
		t.Fatalf("live with a gzip body: %d %s", r.code, r.body)
	}
	if p := ts.budget.TakePeak(); p != 0 {
		t.Errorf("the liveness check reserved %d bytes for a body it does not take", p)
	}
}

// A client that declares a large body and trickles it holds what it has
// sent, not what it declared: nothing is allocated from Content-Length.
func TestTrickledBodyHoldsWhatArrived(t *testing.T) {
	s, addr := startTCP(t, tinyConfig(nil))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /v2/models/tiny/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", 50<<20)
	c.Write(bytes.Repeat([]byte(" "), 100<<10))
	if _, ok := testbed.WaitFor(5*time.Second, func() bool { return s.budget.Used() > 0 }); !ok {
		t.Fatal("the body being read reserved nothing")
	}
	time.Sleep(50 * time.Millisecond) // let the 100 KiB sent arrive
	// What arrived, rounded up to the buffer's doubling, or a pooled
	// buffer of up to 1 MiB: far from 50 MiB.
	if u := s.budget.Used(); u > 2<<20 {
		t.Errorf("100 KiB sent of a declared 50 MiB: %d bytes reserved", u)
	}
	c.Close()
	if _, ok := testbed.WaitFor(5*time.Second, func() bool { return s.budget.Used() == 0 }); !ok {
		t.Errorf("a closed connection left %d bytes reserved", s.budget.Used())
	}
}

// The budget: a request that could never fit gets 413 at once, one that
// does not fit now gets 503 with Retry-After, and every byte comes back.
func TestMemoryBudgetRefuses(t *testing.T) {
	ts := start(t, tinyConfig(func(c *config.Config) { c.Server.MemoryLimit = 4 << 20 }))
	one := jsonInfer(1, floats(3*224*224, 0.1)) // about 1.6 MB of JSON, 5x that reserved to parse
	ts.do(t, "POST", "/v2/models/tiny/infer", "application/json", one).wantError(t, 413, "server.memory_limit")
	bin, hlen := binaryInfer(1, floats(3*224*224, 0.1), true) // 600 KB: fits
	if r := ts.do(t, "POST", "/v2/models/tiny/infer", "application/octet-stream", bin, headerInferenceLength, fmt.Sprint(hlen)); r.code != 200 {
		t.Fatalf("a binary request within the budget: %d %s", r.code, r.body)
	} else if st := r.header.Get("Server-Timing"); !strings.HasPrefix(st, "queue;dur=") || !strings.Contains(st, ", compute;dur=") {
		t.Errorf("Server-Timing %q: want queue and compute", st)
	}
	// Fill the budget: its large share, and all but 100 KiB of the rest.
	h, h2 := ts.budget.Hold(), ts.budget.Hold()
	if err := h.Reserve(ts.budget.MaxHold(), "the test"); err != nil {
		t.Fatal(err)
	}
	if err := h2.Reserve(ts.budget.Limit()-ts.budget.MaxHold()-(100<<10), "the test"); err != nil {
		t.Fatal(err)
	}
	r := ts.do(t, "POST", "/v2/models/tiny/infer", "application/octet-stream", bin, headerInferenceLength, fmt.Sprint(hlen))
	r.wantError(t, 503, "server.memory_limit")
	if r.header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	h.Release()
	h2.Release()
	if r := ts.do(t, "POST", "/v2/models/tiny/infer", "application/octet-stream", bin, headerInferenceLength, fmt.Sprint(hlen)); r.code != 200 {
		t.Fatalf("after the budget freed: %d %s", r.code, r.body)
	}
	if _, ok := testbed.WaitFor(5*time.Second, func() bool { return ts.budget.Used() == 0 }); !ok {
		t.Errorf("%d bytes still reserved with no request running", ts.budget.Used())
	}
}

// One client address cannot take more than max_connections_per_client,
// nor all clients more than max_connections; over either, a small reserve
// of short-lived connections still answers health checks and scrapes (a
// load balancer checks from the address its traffic comes from), and only
// when the reserve is taken too is a connection refused.
func TestConnectionLimits(t *testing.T) {
	s, addr := startTCP(t, tinyConfig(func(c *config.Config) {
		c.Server.MaxConnections = 6
		c.Server.MaxConnectionsPerClient = 3
	}))
	from := func(ip string) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip)} }
	hold := func(local string) net.Conn {
		t.Helper()
		c, err := (&net.Dialer{LocalAddr: from(local)}).Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		// A request answered proves the connection was accepted and counted.
		io.WriteString(c, "GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
		var resp fasthttp.Response
		if err := resp.Read(bufio.NewReader(c)); err != nil || resp.StatusCode() != 200 {
			t.Fatalf("connection from %s: %v %d", local, err, resp.StatusCode())
		}
		return c
	}
	get := func(local, path string) *fasthttp.Response {
		t.Helper()
		resp, err := rawExchange(t, addr, from(local), "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n", 5*time.Second)
		if err != nil {
			t.Fatalf("GET %s from %s: %v", path, local, err)
		}
		return resp
	}
	for range 3 {
		hold("127.0.0.2")
	}
	// Over the per-client cap: health yes, work no.
	if r := get("127.0.0.2", "/v2/health/ready"); r.StatusCode() != 200 || !r.ConnectionClose() {
		t.Errorf("health from a client at its cap: %v", r)
	}
	if r := get("127.0.0.2", "/v2/models/tiny"); r.StatusCode() != 503 || !bytes.Contains(r.Body(), []byte("max_connections_per_client")) {
		t.Errorf("work from a client at its cap: %v", r)
	}
	// Another client is served; then all 6 slots are taken.
	for range 3 {
		hold("127.0.0.3")
	}
	if r := get("127.0.0.4", "/metrics"); r.StatusCode() != 200 {
		t.Errorf("a scrape at max_connections: %d", r.StatusCode())
	}
	if r := get("127.0.0.4", "/v2/models/tiny"); r.StatusCode() != 503 {
		t.Errorf("work at max_connections: %v", r)
	}
	// A client that parks on the reserve (a body that never comes) loses
	// it within its lifetime, whatever read_timeout says.
	parked := make([]net.Conn, 0, reserveConns)
	for i := range reserveConns {
		c, err := (&net.Dialer{LocalAddr: from(fmt.Sprintf("127.0.1.%d", 1+i/reservePerClient))}).Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "POST /v2/models/tiny/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
		parked = append(parked, c)
	}
	// The reserve is taken: refused, with the reason.
	if _, ok := testbed.WaitFor(5*time.Second, func() bool {
		r, err := rawExchange(t, addr, from("127.0.0.2"), "GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n", 5*time.Second)
		return err == nil && r.StatusCode() == 429 && bytes.Contains(r.Body(), []byte("max_connections_per_client"))
	}); !ok {
		t.Error("no 429 for a client over its cap with the reserve taken")
	}
	if r := get("127.0.0.6", "/v2/health/ready"); r.StatusCode() != 503 {
		t.Errorf("a new client with every slot and the reserve taken: %v", r)
	}
	start := time.Now()
	for _, c := range parked {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, c) // until the server closes it
	}
	if d := time.Since(start); d > reserveLifetime+time.Second {
		t.Errorf("parked reserve connections held %v", d)
	}
	if r := get("127.0.0.6", "/v2/health/ready"); r.StatusCode() != 200 {
		t.Errorf("health once the reserve is free again: %v", r)
	}
	var m bytes.Buffer
	s.set.WritePrometheus(&m)
	for _, reason := range []string{"per_client", "max"} {
		if !strings.Contains(m.String(), `inferd_http_connections_rejected_total{reason="`+reason+`"}`) ||
			strings.Contains(m.String(), `inferd_http_connections_rejected_total{reason="`+reason+`"} 0`) {
			t.Errorf("refusals for %s not counted", reason)
		}
	}
}

// While the configured models load, their routes answer 503 with
// Retry-After (which load balancers and clients retry), not 404.
func TestLoadingModelIs503(t *testing.T) {
	needLibrary(t)
	s := New(tinyConfig(nil), nil, quiet)
	s.loading.Store(true) // as LoadModels does while it opens the models
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	defer func() {
		ctx, cancel := contextWithTimeout(10 * time.Second)
		defer cancel()
		s.Shutdown(ctx)
	}()
	for _, path := range []string{"/v2/models/tiny/ready", "/v2/models/tiny/classify", "/v2/models/tiny"} {
		resp, err := rawExchange(t, ln.Addr().String(), nil, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n", 5*time.Second)
		if err != nil || resp.StatusCode() != 503 || len(resp.Header.Peek("Retry-After")) == 0 || !bytes.Contains(resp.Body(), []byte("is loading")) {
			t.Errorf("%s while loading: %v %v", path, err, resp)
		}
	}
	resp, err := rawExchange(t, ln.Addr().String(), nil, "GET /v2/models/other/ready HTTP/1.1\r\nHost: x\r\n\r\n", 5*time.Second)
	if err != nil || resp.StatusCode() != 404 {
		t.Errorf("an unconfigured model while loading: %v %v", err, resp)
	}
	if err := s.LoadModels(); err != nil {
		t.Fatal(err)
	}
	resp, err = rawExchange(t, ln.Addr().String(), nil, "GET /v2/models/tiny/ready HTTP/1.1\r\nHost: x\r\n\r\n", 5*time.Second)
	if err != nil || resp.StatusCode() != 200 {
		t.Errorf("ready after loading: %v %v", err, resp)
	}
}

// Transport errors are JSON, name neither the request's bytes nor the HTTP
// library, and use the status that says what was too large.
func TestTransportErrors(t *testing.T) {
	_, addr := startTCP(t, tinyConfig(nil))
	secret := "SECRET-" + strings.Repeat("x", 100)
	for _, c := range []struct {
		name, req string
		code      int
		want      string
	}{
		{"garbage", "\x16\x03\x01 " + secret + "\r\n\r\n", 400, "malformed"},
		{"long URL", "GET /v2/" + strings.Repeat("a", 20<<10) + " HTTP/1.1\r\nHost: x\r\n\r\n", 414, "URL"},
		{"large headers", "GET /v2 HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-Pad: "+strings.Repeat("b", 1000)+"\r\n", 20) + "\r\n", 431, "headers"},
		{"bad chunked body", "POST /v2/models/tiny/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz" + secret + "\r\n", 400, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, err := rawExchange(t, addr, nil, c.req, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			body := string(resp.Body())
			if resp.StatusCode() != c.code || !strings.HasPrefix(body, `{"error":`) || !strings.Contains(body, c.want) {
				t.Errorf("got %d %s, want %d with %q", resp.StatusCode(), body, c.code, c.want)
			}
			if strings.Contains(body, "SECRET") || strings.Contains(strings.ToLower(body), "fasthttp") {
				t.Errorf("the answer echoes the request or names the library: %s", body)
			}
		})
	}
	// Bare line feeds: a 400 at once, not a wait for the read timeout.
	start := time.Now()
	resp, err := rawExchange(t, addr, nil, "GET /v2/health/live HTTP/1.1\nHost: x\n\n", 5*time.Second)
	if d := time.Since(start); d > time.Second || err != nil || resp.StatusCode() != 400 {
		t.Errorf("a bare-LF request: %v after %v (%v)", resp, d, err)
	}
}

// server.max_pixels reaches the preprocessor: lowered, it refuses an image
// that the preprocessor's own default would take.
func TestMaxPixelsReachesPreprocessor(t *testing.T) {
	ts := start(t, tinyConfig(func(c *config.Config) { c.Server.MaxPixels = 1000 }))
	ts.do(t, "POST", "/v2/models/tiny/classify", "image/png", pngImage(t, 64, 48, 3)).wantError(t, 415, "max_pixels 1000")
	if r := ts.do(t, "POST", "/v2/models/tiny/classify", "image/png", pngImage(t, 30, 30, 3)); r.code != 200 {
		t.Errorf("a 30x30 image under max_pixels 1000: %d %s", r.code, r.body)
	}
}

// A model name may hold a quote (the config allows it): readiness is
// still valid JSON naming it.
func TestModelReadyNameIsEncoded(t *testing.T) {
	ts := start(t, tinyConfig(func(c *config.Config) { c.Models[0].Name = `ti"ny` }))
	r := ts.do(t, "GET", `/v2/models/ti"ny/ready`, "", nil)
	var got struct {
		Name  string `json:"name"`
		Ready bool   `json:"ready"`
	}
	if r.code != 200 || json.Unmarshal(r.body, &got) != nil || got.Name != `ti"ny` || !got.Ready {
		t.Fatalf("ready: %d %s", r.code, r.body)
	}
}

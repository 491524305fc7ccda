package server

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/inferd/inferd/config"
	"github.com/inferd/inferd/internal/testbed"
)

// Requests from many clients at once are batched, and each gets its own
// answer: the probabilities of its own image.
func TestConcurrentRequestsGetTheirOwnRows(t *testing.T) {
	ts := start(t, tinyConfig(func(c *config.Config) { c.Models[0].Batcher.MaxDelay = 5 * time.Millisecond }))
	const clients = 24
	want := make([][]float32, clients)
	for i := range clients {
		var r inferResponse
		ts.do(t, "POST", "/v2/models/tiny/infer", "", jsonInfer(1, floats(3*224*224, float64(i)))).json(t, &r)
		want[i] = r.Outputs[0].Data
	}
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			body, hlen := binaryInfer(1, floats(3*224*224, float64(i)), false)
			for range 3 {
				var r inferResponse
				resp := ts.do(t, "POST", "/v2/models/tiny/infer", "", body, "Inference-Header-Content-Length", strconv.Itoa(hlen))
				if resp.code != 200 {
					t.Errorf("client %d: %d %s", i, resp.code, resp.body)
					return
				}
				resp.json(t, &r)
				for k, v := range r.Outputs[0].Data {
					if d := v - want[i][k]; d > 1e-5 || d < -1e-5 {
						t.Errorf("client %d got another row (class %d: %g vs %g)", i, k, v, want[i][k])
						return
					}
				}
			}
		})
	}
	wg.Wait()
	// The batcher really batched: fewer batches than requests.
	text := metricsText(t, ts)
	batches := metricValue(text, `inferd_batcher_batches_total{model="tiny"}`)
	if batches <= 0 || batches >= clients*3+clients {
		t.Errorf("%v batches for %d requests", batches, clients*4)
	}
}

// The queue bound answers 503 with Retry-After at once, and a deadline
// that passes in the queue answers 504; other requests are unaffected.
func TestQueueFullAndDeadline(t *testing.T) {
	ts := start(t, tinyConfig(func(c *config.Config) {
		c.Models[0].Batcher.QueueCapacity = 1
		c.Models[0].Batcher.MaxDelay = 200 * time.Millisecond
		c.Models[0].MaxBatch = 8
	}))
	body := jsonInfer(1, floats(3*224*224, 0))
	var codes sync.Map
	var wg sync.WaitGroup
	var retryAfter atomic.Bool
	for range 6 {
		wg.Go(func() {
			r := ts.do(t, "POST", "/v2/models/tiny/infer", "", body)
			n, _ := codes.LoadOrStore(r.code, new(atomic.Int32))
			n.(*atomic.Int32).Add(1)
			if r.code == 503 && r.header.Get("Retry-After") != "" {
				retryAfter.Store(true)
			}
		})
	}
	wg.Wait()
	if _, ok := codes.Load(503); !ok || !retryAfter.Load() {
		t.Errorf("no 503 with Retry-After from a queue of capacity 1")
	}
	if _, ok := codes.Load(200); !ok {
		t.Errorf("no request succeeded")
	}
	// parameters.timeout (microseconds) shorter than the model's own run:
	// refused at once, not expired in the queue.
	short := strings.Replace(string(body), `"inputs"`, `"parameters":{"timeout":1},"inputs"`, 1)
	ts.do(t, "POST", "/v2/models/tiny/infer", "", []byte(short)).wantError(t, http.StatusServiceUnavailable, "cannot meet deadline")
}

func TestMetricsPassPromtool(t *testing.T) {
	ts := start(t, tinyConfig(nil))
	ts.do(t, "POST", "/v2/models/tiny/infer", "", jsonInfer(2, floats(2*3*224*224, 0)))
	ts.do(t, "GET", "/v2/models/nope", "", nil)
	text := metricsText(t, ts)
	for _, want := range []string{
		`inferd_http_requests_total{model="tiny",endpoint="infer",code="200",protocol="http"} 1`,
		`inferd_http_requests_total{model="",endpoint="other",code="404",protocol="http"} 1`,
		`inferd_http_request_duration_seconds_bucket{model="tiny",endpoint="infer",code="200",protocol="http",le="+Inf"} 1`,
		`inferd_batcher_batch_size_bucket{model="tiny"`,
		`inferd_model_info{model="tiny",device="cpu"`,
		`inferd_http_requests_in_flight`,
		`go_goroutines`,
		`process_resident_memory_bytes`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	promtool := testbed.Tool(t, "INFERD_PROMTOOL", "promtool-"+testbed.PrometheusVersion, "promtool", true)
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

func metricsText(t *testing.T, ts *testServer) string {
	t.Helper()
	r := ts.do(t, "GET", "/metrics", "", nil)
	if r.code != 200 {
		t.Fatalf("/metrics: %d", r.code)
	}
	return string(r.body)
}

// metricValue returns the value of the line starting with name, or -1.
func metricValue(text, name string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err == nil {
				return v
			}
		}
	}
	return -1
}

// Shutdown turns readiness off first, then finishes what was queued.
func TestShutdownFinishesQueuedWork(t *testing.T) {
	needLibrary(t)
	cfg := tinyConfig(func(c *config.Config) { c.Models[0].Batcher.MaxDelay = 300 * time.Millisecond })
	ts := start(t, cfg)
	body := jsonInfer(1, floats(3*224*224, 0))
	var wg sync.WaitGroup
	var ok atomic.Int32
	for range 4 {
		wg.Go(func() {
			if r := ts.do(t, "POST", "/v2/models/tiny/infer", "", body); r.code == 200 {
				ok.Add(1)
			}
		})
	}
	// Wait until all four are queued.
	deadline := time.Now().Add(5 * time.Second)
	for ts.model("tiny").QueueDepth() < 4 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := contextWithTimeout(10 * time.Second)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if ok.Load() != 4 {
		t.Errorf("%d of 4 queued requests succeeded across shutdown", ok.Load())
	}
	if ts.Ready() {
		t.Error("ready after shutdown")
	}
}

// Drain hooks run once readiness is 503, before the listener closes.
func TestDrainHookRunsWhenNotReady(t *testing.T) {
	needLibrary(t)
	cfg := tinyConfig(func(c *config.Config) { c.Server.DrainDelay = 50 * time.Millisecond })
	ts := start(t, cfg)
	var readyInHook atomic.Bool
	var ran atomic.Int32
	ts.OnDrain(func() { ran.Add(1); readyInHook.Store(ts.Ready()) })
	ctx, cancel := contextWithTimeout(10 * time.Second)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if ran.Load() != 1 || readyInHook.Load() {
		t.Errorf("hook ran %d times, saw ready=%v; want once, not ready", ran.Load(), readyInHook.Load())
	}
}

// Models load while the server already listens (cmd/inferd does this so
// liveness answers at once): requests meanwhile get 503 or 404, never a
// race, and readiness turns 200 when loading is done.
func TestRequestsWhileModelsLoad(t *testing.T) {
	needLibrary(t)
	s := New(tinyConfig(nil), nil, quiet)
	ln := fasthttputil.NewInmemoryListener()
	go s.Serve(ln)
	defer func() {
		ctx, cancel := contextWithTimeout(10 * time.Second)
		defer cancel()
		s.Shutdown(ctx)
	}()
	ts := &testServer{Server: s, dial: ln.Dial, client: &fasthttp.Client{Dial: func(string) (net.Conn, error) { return ln.Dial() }}}
	if r := ts.do(t, "GET", "/v2/health/ready", "", nil); r.code != 503 {
		t.Fatalf("ready before loading: %d", r.code)
	}
	loaded := make(chan error, 1)
	go func() { loaded <- s.LoadModels() }()
	img := pngImage(t, 32, 32, 1)
	ct, body := multipartImage(t, "image", img)
	for done := false; !done; {
		select {
		case err := <-loaded:
			if err != nil {
				t.Fatal(err)
			}
			done = true
		default:
		}
		for _, r := range []response{
			ts.do(t, "POST", "/recognize", ct, body),
			ts.do(t, "GET", "/v2/models/tiny", "", nil),
		} {
			if r.code != 200 && r.code != 503 && r.code != 404 {
				t.Fatalf("while loading: %d %s", r.code, r.body)
			}
		}
	}
	if r := ts.do(t, "GET", "/v2/health/ready", "", nil); r.code != 200 {
		t.Fatalf("ready after loading: %d", r.code)
	}
	if r := ts.do(t, "POST", "/recognize", ct, body); r.code != 200 {
		t.Fatalf("recognize after loading: %d %s", r.code, r.body)
	}
}

// The default replica name is the host name and the listen port, whatever
// the listen host.
func TestDefaultReplicaName(t *testing.T) {
	host, _ := os.Hostname()
	for listen, want := range map[string]string{
		":8000":           host + ":8000",
		"127.0.0.1:35831": host + ":35831",
		"[::1]:9000":      host + ":9000",
		"":                host,
	} {
		if got := defaultReplica(listen); got != want {
			t.Errorf("defaultReplica(%q) = %q, want %q", listen, got, want)
		}
	}
}

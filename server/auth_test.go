package server

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/inferd/inferd/auth"
	"github.com/inferd/inferd/config"
)

// Keys of the tests' tenants: team-a may use every model at 1 request/s
// (burst 2); team-b the tiny models, unlimited; steady every model at
// 20/s; scraper only /metrics.
const (
	keyA       = "inferd_test-key-team-a"
	keyB       = "inferd_test-key-team-b"
	keySteady  = "inferd_test-key-steady"
	keyScraper = "inferd_test-key-scraper"
)

func testKeysYAML() string {
	return fmt.Sprintf(`
tenants:
  team-a: {keys: [%s], models: ["*"], rate: 1, burst: 2}
  team-b: {keys: [%s], models: ["tiny*"]}
  steady: {keys: [%s], models: ["*"], rate: 20, burst: 1}
  scraper: {keys: [%s], metrics: true}
`, auth.HashKey(keyA), auth.HashKey(keyB), auth.HashKey(keySteady), auth.HashKey(keyScraper))
}

// authConfig is tinyConfig with the test keys file and auth as mod sets it.
func authConfig(t *testing.T, mod func(*config.Config)) *config.Config {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keys.yaml")
	if err := os.WriteFile(path, []byte(testKeysYAML()), 0o600); err != nil {
		t.Fatal(err)
	}
	return tinyConfig(func(c *config.Config) {
		c.Auth = auth.Settings{Enabled: true, KeysFile: path}
		if mod != nil {
			mod(c)
		}
	})
}

// httpResult is one answer over a real connection.
type httpResult struct {
	code   int
	header http.Header
	body   string
}

// call sends one request through client to base+path with the headers
// given as name, value pairs.
func call(t *testing.T, client *http.Client, base, method, path string, body []byte, headers ...string) httpResult {
	t.Helper()
	req, err := http.NewRequest(method, base+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return httpResult{resp.StatusCode, resp.Header, string(b)}
}

// What a client gets from a replica with auth on, request by request: the
// gateway's statuses, headers and JSON errors, word for word.
func TestAuthRefusals(t *testing.T) {
	s, addr := startTCP(t, authConfig(t, nil))
	base := "http://" + addr
	c := &http.Client{Timeout: 10 * time.Second}
	const (
		missing = `{"error":"missing API key: send Authorization: Bearer KEY or X-API-Key: KEY"}`
		unknown = `{"error":"unknown API key"}`
	)
	for _, tc := range []struct {
		name, method, path string
		headers            []string
		code               int
		body               string // the whole body; "" for any
	}{
		{"liveness needs no key", "GET", "/v2/health/live", nil, 200, `{"live":true}`},
		{"readiness needs no key", "GET", "/v2/health/ready", nil, 200, ""},
		{"metrics are open without metrics_key", "GET", "/metrics", nil, 200, ""},
		{"no key", "GET", "/v2/models/tiny", nil, 401, missing},
		{"no key, server metadata", "GET", "/v2", nil, 401, missing},
		// The key comes before the route: no 404 tells what exists.
		{"no key, no such route", "GET", "/nope", nil, 401, missing},
		{"an unknown key", "GET", "/v2/models/tiny", []string{"Authorization", "Bearer inferd_nope"}, 401, unknown},
		{"another scheme", "GET", "/v2/models/tiny", []string{"Authorization", "Basic a2V5"}, 401, missing},
		{"a huge key", "GET", "/v2/models/tiny", []string{"X-API-Key", strings.Repeat("k", 600)}, 401, `{"error":"malformed API key"}`},
		{"a good key", "GET", "/v2/models/tiny", []string{"Authorization", "Bearer " + keyB}, 200, ""},
		{"X-API-Key", "GET", "/v2/models/tiny/ready", []string{"X-API-Key", keyB}, 200, ""},
		{"bearer in lower case", "GET", "/v2/models/tiny", []string{"Authorization", "bearer " + keyB}, 200, ""},
		// A model outside the tenant is named, served or not, and the
		// models it may use are not.
		{"a model outside the tenant", "GET", "/v2/models/resnet50/infer", []string{"X-API-Key", keyB}, 403, `{"error":"model \"resnet50\" is not allowed for this key"}`},
		{"the default model needs every model", "POST", "/recognize", []string{"X-API-Key", keyB}, 403,
			`{"error":"/recognize runs the default model of a replica: only a key allowed every model may use it"}`},
		{"the scraper's key runs no model", "GET", "/v2/models/tiny", []string{"X-API-Key", keyScraper}, 403, `{"error":"model \"tiny\" is not allowed for this key"}`},
		{"an unknown model, allowed by pattern", "GET", "/v2/models/tiny-nope", []string{"X-API-Key", keyB}, 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := call(t, c, base, tc.method, tc.path, nil, tc.headers...)
			if r.code != tc.code || tc.body != "" && r.body != tc.body {
				t.Fatalf("%d %s; want %d %s", r.code, r.body, tc.code, tc.body)
			}
			if www := r.header.Get("WWW-Authenticate"); (r.code == 401) != (www == "Bearer") {
				t.Errorf("%d with WWW-Authenticate %q", r.code, www)
			}
			if r.code >= 400 && r.header.Get("Content-Type") != "application/json" {
				t.Errorf("Content-Type %q", r.header.Get("Content-Type"))
			}
		})
	}
	// An infer request with a good key runs.
	if r := call(t, c, base, "POST", "/v2/models/tiny/infer", jsonInfer(1, floats(3*224*224, 0.1)), "X-API-Key", keyB); r.code != 200 {
		t.Errorf("infer with team-b's key: %d %s", r.code, r.body)
	}
	// A refused request is answered before its body is read: 50 MB
	// declared, 64 KiB sent, nothing reserved for it.
	s.budget.TakePeak()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "POST /v2/models/tiny/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", 50<<20)
	conn.Write(bytes.Repeat([]byte(" "), 64<<10))
	var resp fasthttp.Response
	if err := resp.Read(bufio.NewReader(conn)); err != nil || resp.StatusCode() != 401 {
		t.Fatalf("a keyless POST with a body on its way: %v %d", err, resp.StatusCode())
	}
	if p := s.budget.TakePeak(); p != 0 {
		t.Errorf("a refused request reserved %d bytes for its body", p)
	}
}

// A tenant over its rate gets 429 with Retry-After while another tenant is
// served; a tenant sending faster than its rate has its rate served in
// full, and no more.
func TestAuthRateLimits(t *testing.T) {
	_, addr := startTCP(t, authConfig(t, nil))
	base := "http://" + addr
	c := &http.Client{Timeout: 10 * time.Second}
	for i := range 2 { // team-a's burst
		if r := call(t, c, base, "GET", "/v2/models/tiny", nil, "X-API-Key", keyA); r.code != 200 {
			t.Fatalf("request %d of team-a's burst: %d %s", i+1, r.code, r.body)
		}
	}
	r := call(t, c, base, "GET", "/v2/models/tiny", nil, "X-API-Key", keyA)
	if r.code != 429 || r.body != `{"error":"rate limit of 1 requests/s exceeded for this key"}` || r.header.Get("Retry-After") != "1" {
		t.Fatalf("team-a past its burst: %d %s, Retry-After %q", r.code, r.body, r.header.Get("Retry-After"))
	}
	for range 20 {
		if r := call(t, c, base, "GET", "/v2/models/tiny", nil, "X-API-Key", keyB); r.code != 200 {
			t.Fatalf("team-b while team-a is limited: %d %s", r.code, r.body)
		}
	}
	// steady: 20/s, burst 1, asked by 4 clients as fast as they can.
	var ok, limited atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for time.Since(start) < time.Second {
				switch r := call(t, c, base, "GET", "/v2/models/tiny", nil, "X-API-Key", keySteady); r.code {
				case 200:
					ok.Add(1)
				case 429:
					limited.Add(1)
				default:
					t.Errorf("steady: %d %s", r.code, r.body)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	t.Logf("steady at 20/s for %.2fs: %d served, %d limited", elapsed, ok.Load(), limited.Load())
	if n := float64(ok.Load()); n > 1+20*elapsed+1 || n < 20*elapsed-2 || limited.Load() == 0 {
		t.Errorf("steady at 20/s for %.2fs: %d served, %d limited; want its rate in full and no more", elapsed, ok.Load(), limited.Load())
	}
}

// metrics_key: /metrics needs a key of a tenant with metrics: true; the
// counts per tenant are there, with their HELP line.
func TestAuthMetricsKey(t *testing.T) {
	_, addr := startTCP(t, authConfig(t, func(c *config.Config) { c.Auth.MetricsKey = true }))
	base := "http://" + addr
	c := &http.Client{Timeout: 10 * time.Second}
	if r := call(t, c, base, "GET", "/metrics", nil); r.code != 401 || r.header.Get("WWW-Authenticate") != "Bearer" {
		t.Errorf("metrics without a key: %d %s", r.code, r.body)
	}
	if r := call(t, c, base, "GET", "/metrics", nil, "X-API-Key", keyB); r.code != 403 || r.body != `{"error":"/metrics is not allowed for this key"}` {
		t.Errorf("metrics with team-b's key: %d %s", r.code, r.body)
	}
	if r := call(t, c, base, "GET", "/v2/health/ready", nil); r.code != 200 {
		t.Errorf("health with metrics_key: %d", r.code)
	}
	r := call(t, c, base, "GET", "/metrics", nil, "Authorization", "Bearer "+keyScraper)
	if r.code != 200 || !strings.Contains(r.body, "# HELP inferd_tenant_requests_total Requests by tenant") {
		t.Fatalf("metrics with the scraper's key: %d %.300s", r.code, r.body)
	}
	for _, want := range []string{`inferd_tenant_requests_total{tenant="team-b"} 1`, `inferd_tenant_requests_total{tenant="scraper"} 1`, `inferd_tenant_requests_total{tenant="other"} 1`} {
		if !strings.Contains(r.body, want+"\n") {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// tenantCounts reads inferd_tenant_requests_total from s's /metrics text.
func tenantCounts(t *testing.T, s *Server) map[string]int {
	t.Helper()
	var b bytes.Buffer
	s.Metrics().WritePrometheus(&b)
	got := map[string]int{}
	for _, m := range regexp.MustCompile(`(?m)^inferd_tenant_requests_total\{tenant="([^"]*)"\} (\d+)$`).FindAllStringSubmatch(b.String(), -1) {
		got[m[1]], _ = strconv.Atoi(m[2])
	}
	return got
}

// With auth off behind the gateway, requests count under X-Inferd-Tenant
// when it names a configured tenant (auth.tenants or the keys file), else
// as other: a forged or unknown name grows no series.
func TestTenantHeaderCounted(t *testing.T) {
	s, addr := startTCP(t, authConfig(t, func(c *config.Config) {
		c.Auth.Enabled = false
		c.Auth.Tenants = []string{"gw-only"}
	}))
	base := "http://" + addr
	c := &http.Client{Timeout: 10 * time.Second}
	for _, tenant := range []string{"team-a", "team-a", "gw-only", "forged", `forged"} 9`, "", strings.Repeat("x", 4000)} {
		var h []string
		if tenant != "" {
			h = []string{HeaderTenant, tenant}
		}
		if r := call(t, c, base, "GET", "/v2/models/tiny", nil, h...); r.code != 200 {
			t.Fatalf("tenant %.20q with auth off: %d %s", tenant, r.code, r.body)
		}
	}
	call(t, c, base, "GET", "/v2/health/ready", nil, HeaderTenant, "team-a") // not counted
	want := map[string]int{"team-a": 2, "gw-only": 1, "other": 3, "team-b": 0, "steady": 0, "scraper": 0}
	if got := tenantCounts(t, s); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("tenant counts %v, want %v", got, want)
	}
}

// 10,000 random keys: every one 401, none counted but as other, and the
// server's heap does not grow with them.
func TestRandomKeysFlood(t *testing.T) {
	s, addr := startTCP(t, authConfig(t, nil))
	hc := &fasthttp.HostClient{Addr: addr, MaxConns: 8}
	send := func(n int) (refused int64) {
		var wg sync.WaitGroup
		var count atomic.Int64
		for g := range 8 {
			wg.Go(func() {
				req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
				defer fasthttp.ReleaseRequest(req)
				defer fasthttp.ReleaseResponse(resp)
				var key [32]byte
				for i := g; i < n; i += 8 {
					rand.Read(key[:])
					req.SetRequestURI("http://" + addr + "/v2/models/tiny/infer")
					req.Header.SetMethod("POST")
					if i%2 == 0 {
						req.Header.Set("Authorization", "Bearer "+hex.EncodeToString(key[:]))
					} else {
						req.Header.Set("X-API-Key", hex.EncodeToString(key[:]))
					}
					if err := hc.Do(req, resp); err != nil {
						t.Error(err)
						return
					}
					if resp.StatusCode() == 401 {
						count.Add(1)
					}
					req.Reset()
				}
			})
		}
		wg.Wait()
		return count.Load()
	}
	send(400) // warm the pools
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	const n = 10_000
	if got := send(n); got != n {
		t.Errorf("%d of %d random keys refused with 401", got, n)
	}
	after := heap()
	t.Logf("heap %d KiB before, %d KiB after %d random keys", before>>10, after>>10, n)
	if after > before+4<<20 {
		t.Errorf("the heap grew by %d KiB over %d random keys", (after-before)>>10, n)
	}
	counts := tenantCounts(t, s)
	if counts["other"] != n+400 || len(counts) != 5 {
		t.Errorf("tenant series after the flood: %v", counts)
	}
}

// Headers a client can get wrong on the wire, byte by byte: each a 4xx in
// JSON, never a 5xx nor a hang.
func TestAuthMalformedHeaders(t *testing.T) {
	_, addr := startTCP(t, authConfig(t, nil))
	for _, c := range []struct {
		name, header string
		codes        []int
	}{
		{"empty Authorization", "Authorization: \r\n", []int{401}},
		{"scheme only", "Authorization: Bearer\r\n", []int{401}},
		{"NUL in the key", "Authorization: Bearer ab\x00cd\r\n", []int{400, 401}},
		{"a control byte", "X-API-Key: ab\x01cd\r\n", []int{400, 401}},
		{"high bytes", "X-API-Key: \xff\xfe\xfd\r\n", []int{401}},
		{"a tab inside", "Authorization: Bearer ab\tcd\r\n", []int{401}},
		{"7 KiB of key", "Authorization: Bearer " + strings.Repeat("k", 7<<10) + "\r\n", []int{401}},
		{"headers over the buffer", "X-API-Key: " + strings.Repeat("k", 9<<10) + "\r\n", []int{431}},
		{"two keys, the first unknown", "Authorization: Bearer nope\r\nAuthorization: Bearer " + keyB + "\r\n", []int{401}},
		// fasthttp unfolds an obsolete line folding: the key is read whole.
		{"a folded line", "Authorization: Bearer\r\n " + keyB + "\r\n", []int{200, 400, 401}},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, err := rawExchange(t, addr, nil, "GET /v2/models/tiny HTTP/1.1\r\nHost: x\r\n"+c.header+"\r\n", 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			code := resp.StatusCode()
			if code >= 400 && !bytes.HasPrefix(resp.Body(), []byte(`{"error":`)) || !containsInt(c.codes, code) {
				t.Errorf("%d %s; want one of %v", code, resp.Body(), c.codes)
			}
		})
	}
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// SIGHUP's LoadSecurity swaps the keys: a revoked key is refused from the
// next request; a broken file changes nothing and says why, naming the key.
func TestAuthReload(t *testing.T) {
	cfg := authConfig(t, nil)
	s, addr := startTCP(t, cfg)
	base := "http://" + addr
	c := &http.Client{Timeout: 10 * time.Second}
	if r := call(t, c, base, "GET", "/v2/models/tiny", nil, "X-API-Key", keyB); r.code != 200 {
		t.Fatalf("before: %d", r.code)
	}
	revoked := strings.Replace(testKeysYAML(), auth.HashKey(keyB), auth.HashKey("inferd_new-key-b"), 1)
	os.WriteFile(cfg.Auth.KeysFile, []byte(revoked), 0o600)
	if err := s.LoadSecurity(cfg); err != nil {
		t.Fatal(err)
	}
	if r := call(t, c, base, "GET", "/v2/models/tiny", nil, "X-API-Key", keyB); r.code != 401 {
		t.Errorf("a revoked key: %d %s", r.code, r.body)
	}
	if r := call(t, c, base, "GET", "/v2/models/tiny", nil, "X-API-Key", "inferd_new-key-b"); r.code != 200 {
		t.Errorf("its replacement: %d %s", r.code, r.body)
	}
	os.WriteFile(cfg.Auth.KeysFile, []byte("tenants: {a: {rate: -1}}\n"), 0o600)
	err := s.LoadSecurity(cfg)
	if want := `auth.keys_file "` + cfg.Auth.KeysFile + `": tenants.a.rate -1: must be >= 0 (0: no limit)`; err == nil || err.Error() != want {
		t.Errorf("a broken file: %v\nwant %s", err, want)
	}
	if r := call(t, c, base, "GET", "/v2/models/tiny", nil, "X-API-Key", "inferd_new-key-b"); r.code != 200 {
		t.Errorf("after a failed reload: %d %s", r.code, r.body)
	}
}

// Serve does not start with a keys file that does not load.
func TestServeRefusesBadKeys(t *testing.T) {
	needLibrary(t)
	cfg := tinyConfig(func(c *config.Config) {
		c.Auth = auth.Settings{Enabled: true, KeysFile: filepath.Join(t.TempDir(), "nope.yaml")}
	})
	s := New(cfg, nil, quiet)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(ln); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("Serve: %v", err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("the listener is still open")
	}
}

package cluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/inferd/inferd/internal/testbed"
	"github.com/inferd/inferd/model"
)

// gateway is a small cluster with the gateway on, started as make cluster
// starts it: a Consul dev agent, replicas of the tiny model, HAProxy from
// configs/haproxy.cfg serving TLS with a certificate that
// `scripts/cluster.sh certs` made, and the maps that inferd-keys edits.
type gateway struct {
	t        *testing.T
	dir      string
	gwDir    string // the maps (HAPROXY_GATEWAY_DIR)
	tlsDir   string // ca.pem, server.pem
	hapBin   string
	keysBin  string
	inferd   string
	consul   *testbed.Consul
	replicas []*replica
	hap      *hapProc // the gateway
	ca       *x509.CertPool
	client   *http.Client // HTTP/1.1 over TLS, trusting only the cluster's CA
}

// hapProc is one HAProxy process and its ports.
type hapProc struct {
	name                            string
	proc                            *testbed.Proc
	plain, tlsPort, stats, grpcPort int
	runDir                          string
	env                             []string
}

func (h *hapProc) sock() string { return filepath.Join(h.runDir, "haproxy.sock") }

// hapArgs are HAProxy's arguments as scripts/cluster.sh gives them: the
// shipped config, in the foreground, freed buffers kept in HAProxy's
// global pool cache (-dMglobal; see tune.bufsize in configs/haproxy.cfg).
func hapArgs() []string {
	return []string{"-dMglobal", "-db", "-f", filepath.Join(repoRoot, "configs", "haproxy.cfg")}
}

// needGatewayTools skips the test (fails it under $INFERD_REQUIRE_TOOLS)
// when a program the gateway tests run is missing, and returns haproxy.
func needGatewayTools(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("gateway test: starts Consul, inferd replicas and HAProxy (skipped under -short)")
	}
	testbed.NeedORT(t)
	hap := testbed.Tool(t, "INFERD_HAPROXY", "", "haproxy", true)
	// scripts/cluster.sh certs runs the openssl on PATH.
	if _, err := exec.LookPath("openssl"); err != nil {
		testbed.Missing(t, "openssl not found on PATH: apt-get install openssl (make setup)")
	}
	testbed.ConsulBin(t)
	return hap
}

// goBuild builds ./cmd/NAME into dir.
func goBuild(t *testing.T, dir, name string) string {
	t.Helper()
	out := filepath.Join(dir, name)
	build := exec.Command("go", "build", "-o", out, "./cmd/"+name)
	build.Dir = repoRoot
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/%s: %v\n%s", name, err, b)
	}
	return out
}

// newGateway starts Consul, n replicas of the tiny model and the gateway,
// and waits until HAProxy has every replica up.
func newGateway(t *testing.T, n int) *gateway { return newGatewayOf(t, n, "tiny") }

// newGatewayOf is newGateway with replicas of model: tiny, or resnet50
// (from the shared model cache, on the CPU).
func newGatewayOf(t *testing.T, n int, modelName string) *gateway {
	hapBin := needGatewayTools(t)
	g := &gateway{t: t, dir: t.TempDir(), hapBin: hapBin}
	g.gwDir = filepath.Join(g.dir, "gateway")
	g.tlsDir = filepath.Join(g.gwDir, "tls")
	if err := os.MkdirAll(g.gwDir, 0o700); err != nil {
		t.Fatal(err)
	}
	// The shipped empty maps, as scripts/cluster.sh installs them.
	for _, name := range []string{"keys.map", "models.map", "rates.map", "concurrency.map"} {
		b, err := os.ReadFile(filepath.Join(repoRoot, "configs", "gateway", name))
		if err != nil {
			t.Fatalf("configs/gateway/%s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(g.gwDir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	certs := exec.Command("bash", filepath.Join(repoRoot, "scripts", "cluster.sh"), "certs", g.tlsDir)
	if out, err := certs.CombinedOutput(); err != nil {
		t.Fatalf("scripts/cluster.sh certs: %v\n%s", err, out)
	}
	pem, err := os.ReadFile(filepath.Join(g.tlsDir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	g.ca = x509.NewCertPool()
	if !g.ca.AppendCertsFromPEM(pem) {
		t.Fatal("ca.pem: no certificate")
	}
	g.client = &http.Client{
		Timeout: requestLimit,
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: g.ca},
			MaxIdleConnsPerHost: 64,
			DisableCompression:  true,
		},
	}

	g.inferd = goBuild(t, g.dir, "inferd")
	g.keysBin = goBuild(t, g.dir, "inferd-keys")
	t.Cleanup(g.down)

	g.consul = testbed.NewConsul(t)
	g.consul.Start()
	g.hap = g.startHAProxy("haproxy", true)
	models, entry := filepath.Join(g.dir, "models"), `{name: tiny, path: "builtin:tiny", device: cpu, max_batch: 8, intra_op_threads: 1}`
	if modelName == "resnet50" {
		// The generated ResNet50 is 100 MB: the cache make run fills.
		models, entry = model.DefaultCacheDir(), `{name: resnet50, path: "builtin:resnet50", device: cpu, max_batch: 8}`
	}
	ort := testbed.ORTLibrary()
	for i := range n {
		r := &replica{name: fmt.Sprintf("replica-%d", i+1), port: testbed.FreePort(t, false), grpcPort: testbed.FreePort(t, false)}
		r.cfg = filepath.Join(g.dir, r.name+".yaml")
		yaml := fmt.Sprintf(`listen: "127.0.0.1:%d"
grpc_listen: "127.0.0.1:%d"
runtime: {library: %q, model_dir: %q}
server: {drain_delay: 1s, replica_name: %s}
models:
  - %s
register:
  enabled: true
  consul_addr: "127.0.0.1:%d"
  tags: [%s, cpu]
  check_interval: 1s
  sync_interval: 1s
`, r.port, r.grpcPort, ort, models, r.name, entry, g.consul.HTTP, modelName)
		if err := os.WriteFile(r.cfg, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		r.proc = testbed.Start(t, g.dir, r.name, nil, g.inferd, "-config", r.cfg)
		g.replicas = append(g.replicas, r)
	}
	g.waitReplicas(g.hap, 5*time.Minute)
	return g
}

// startHAProxy starts configs/haproxy.cfg as the cluster script does: the
// plain front end, the TLS one and the gRPC one, the gateway on or off.
func (g *gateway) startHAProxy(name string, gatewayOn bool) *hapProc {
	t := g.t
	h := &hapProc{
		name: name, runDir: filepath.Join(g.dir, name),
		plain: testbed.FreePort(t, false), tlsPort: testbed.FreePort(t, false), stats: testbed.FreePort(t, false),
		grpcPort: testbed.FreePort(t, false),
	}
	if err := os.MkdirAll(h.runDir, 0o700); err != nil {
		t.Fatal(err)
	}
	on := "on"
	if !gatewayOn {
		on = "off"
	}
	h.env = []string{
		"HAPROXY_PORT=" + strconv.Itoa(h.plain),
		"HAPROXY_GRPC_PORT=" + strconv.Itoa(h.grpcPort),
		"HAPROXY_TLS_BIND=127.0.0.1:" + strconv.Itoa(h.tlsPort),
		"HAPROXY_TLS_CERT=" + filepath.Join(g.tlsDir, "server.pem"),
		"HAPROXY_GATEWAY=" + on,
		"HAPROXY_GATEWAY_DIR=" + g.gwDir,
		"HAPROXY_STATS_PORT=" + strconv.Itoa(h.stats),
		"CONSUL_DNS_PORT=" + strconv.Itoa(g.consul.DNS),
		"HAPROXY_RUN_DIR=" + h.runDir,
	}
	g.runHAProxy(h)
	return h
}

func (g *gateway) runHAProxy(h *hapProc) {
	h.proc = testbed.Start(g.t, h.runDir, h.name, h.env, g.hapBin, hapArgs()...)
	took, ok := testbed.WaitFor(10*time.Second, func() bool {
		return h.proc.Running() && httpOK("http://127.0.0.1:"+strconv.Itoa(h.stats)+"/stats")
	})
	if !ok {
		g.t.Fatalf("%s not answering within %s (running %v):\n%s", h.name, took, h.proc.Running(), h.proc.Tail(30))
	}
}

// restartHAProxy stops the gateway's HAProxy and starts it again on the
// same ports, from the files alone.
func (g *gateway) restartHAProxy(h *hapProc) {
	h.proc.Stop(syscall.SIGTERM, 10*time.Second)
	g.runHAProxy(h)
	g.waitReplicas(h, 30*time.Second)
}

// waitReplicas waits until HAProxy h has every replica up.
func (g *gateway) waitReplicas(h *hapProc, d time.Duration) {
	took, ok := testbed.WaitFor(d, func() bool {
		list, err := hapServers(h.sock(), "inferd")
		if err != nil {
			return false
		}
		up := 0
		for _, s := range list {
			for _, r := range g.replicas {
				if s.port == r.port && s.up() {
					up++
				}
			}
		}
		return up == len(g.replicas)
	})
	if !ok {
		list, err := hapServers(h.sock(), "inferd")
		g.t.Fatalf("%s has not every replica up after %s: %v %v", h.name, took, list, err)
	}
}

func (g *gateway) down() {
	for _, r := range g.replicas {
		if r.proc != nil {
			r.proc.Stop(syscall.SIGTERM, 10*time.Second)
		}
	}
	if g.hap != nil && g.hap.proc != nil {
		g.hap.proc.Stop(syscall.SIGTERM, 10*time.Second)
	}
	if g.consul != nil {
		g.consul.Stop()
	}
	if g.t.Failed() {
		var ps []*testbed.Proc
		if g.hap != nil {
			ps = append(ps, g.hap.proc)
		}
		for _, r := range g.replicas {
			ps = append(ps, r.proc)
		}
		for _, p := range ps {
			if p != nil {
				g.t.Logf("--- %s log (tail):\n%s", p.Name, p.Tail(25))
			}
		}
	}
}

// url is the gateway's TLS URL of path.
func (g *gateway) url(path string) string {
	return "https://127.0.0.1:" + strconv.Itoa(g.hap.tlsPort) + path
}

// keys runs inferd-keys on the gateway's directory and HAProxy, failing the
// test on an error; it returns stdout.
func (g *gateway) keys(args ...string) string {
	g.t.Helper()
	out, errOut, err := g.keysErr(args...)
	if err != nil {
		g.t.Fatalf("inferd-keys %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

func (g *gateway) keysErr(args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(g.keysBin, append([]string{"-dir", g.gwDir, "-socket", g.hap.sock()}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// addKey makes a key for tenant (created with the flags when new) and
// returns it.
func (g *gateway) addKey(tenant string, flags ...string) string {
	g.t.Helper()
	key := strings.TrimSpace(g.keys(append([]string{"add", tenant}, flags...)...))
	if !strings.HasPrefix(key, "ik_") || len(key) != 46 {
		g.t.Fatalf("inferd-keys add printed %q, want ik_ and 43 base64url characters", key)
	}
	return key
}

// answer is what a client saw of one request.
type answer struct {
	status int
	header http.Header
	body   []byte
	proto  int // HTTP major version
	err    error
}

func (a answer) String() string {
	if a.err != nil {
		return a.err.Error()
	}
	return fmt.Sprintf("%d %.300s", a.status, a.body)
}

// do sends a request through the gateway's TLS front end with c (nil: the
// HTTP/1.1 client); hdr holds header pairs.
func (g *gateway) do(c *http.Client, method, path string, body []byte, hdr ...string) answer {
	if c == nil {
		c = g.client
	}
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, g.url(path), r)
	if err != nil {
		return answer{err: err}
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: b, proto: resp.ProtoMajor, err: err}
}

// get is a GET of the tiny model's metadata (cheap for the replica) with key
// as a bearer token ("" sends none).
func (g *gateway) get(key string) answer {
	if key == "" {
		return g.do(nil, "GET", "/v2/models/tiny", nil)
	}
	return g.do(nil, "GET", "/v2/models/tiny", nil, "Authorization", "Bearer "+key)
}

// classify sends the test image to the tiny model with key.
func (g *gateway) classify(c *http.Client, key string, body []byte) answer {
	return g.do(c, "POST", "/v2/models/tiny/classify", body, "Authorization", "Bearer "+key, "Content-Type", "image/png")
}

// wantError checks a gateway refusal: its status, a JSON body exactly like
// inferd's ({"error":"..."}) whose message contains msg, and the headers a
// client acts on.
func wantError(t *testing.T, what string, a answer, status int, msg string) {
	t.Helper()
	if a.err != nil || a.status != status {
		t.Errorf("%s: got %v, want %d", what, a, status)
		return
	}
	if ct := a.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q, want application/json", what, ct)
	}
	var e map[string]string
	if err := json.Unmarshal(a.body, &e); err != nil || len(e) != 1 || !strings.Contains(e["error"], msg) {
		t.Errorf("%s: body %s (%v), want {\"error\": \"...%s...\"}", what, a.body, err, msg)
	}
	if !bytes.HasPrefix(a.body, []byte(`{"error":"`)) {
		t.Errorf("%s: body %s not in inferd's shape {\"error\":\"...\"}", what, a.body)
	}
	switch status {
	case 401:
		if h := a.header.Get("WWW-Authenticate"); h != "Bearer" {
			t.Errorf("%s: WWW-Authenticate %q, want Bearer", what, h)
		}
	case 429:
		if h := a.header.Get("Retry-After"); h != "1" {
			t.Errorf("%s: Retry-After %q, want 1", what, h)
		}
	}
}

// paced sends requests made by fn at rate per second from workers
// goroutines for d (a tick with every worker busy is skipped and counted),
// and counts the answers by status (0: transport error).
type paced struct {
	mu      sync.Mutex
	byCode  map[int]int
	errs    []string
	sent    atomic.Int64
	skipped atomic.Int64
	took    time.Duration
}

func (p *paced) count(code int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.byCode[code]
}

func (p *paced) total() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, v := range p.byCode {
		n += v
	}
	return n
}

func (p *paced) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	codes := slices.Sorted(func(yield func(int) bool) {
		for c := range p.byCode {
			if !yield(c) {
				return
			}
		}
	})
	var b strings.Builder
	for _, c := range codes {
		fmt.Fprintf(&b, "%d×%d ", p.byCode[c], c)
	}
	fmt.Fprintf(&b, "in %s (%.1f/s sent, %d ticks skipped)", p.took.Round(time.Millisecond),
		float64(p.sent.Load())/p.took.Seconds(), p.skipped.Load())
	if len(p.errs) > 0 {
		fmt.Fprintf(&b, "; first errors: %q", p.errs)
	}
	return b.String()
}

// pace runs fn at rate/s until ctx ends or d passes, and waits for the
// requests in flight.
func pace(ctx context.Context, rate float64, d time.Duration, workers int, fn func() answer, check func(answer) string) *paced {
	p := &paced{byCode: map[int]int{}}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	ticks := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range ticks {
				a := fn()
				why := ""
				if check != nil {
					why = check(a)
				}
				p.mu.Lock()
				code := a.status
				if a.err != nil {
					code = 0
					why = a.err.Error()
				}
				p.byCode[code]++
				if why != "" && len(p.errs) < 5 {
					p.errs = append(p.errs, why)
				}
				p.mu.Unlock()
			}
		}()
	}
	start := time.Now()
	tk := time.NewTicker(time.Duration(float64(time.Second) / rate))
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tk.C:
			select {
			case ticks <- struct{}{}:
				p.sent.Add(1)
			default:
				p.skipped.Add(1)
			}
		}
	}
	tk.Stop()
	close(ticks)
	wg.Wait()
	p.took = time.Since(start)
	return p
}

// only200 is a pace check: anything but a 200 is a failure.
func only200(a answer) string {
	if a.err == nil && a.status != 200 {
		return a.String()
	}
	return ""
}

// rawTLS sends req as bytes over a new TLS connection to the gateway and
// reads one response; closed reports a connection closed (or reset)
// without one.
func (g *gateway) rawTLS(req []byte) (status int, body string, closed bool) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", "127.0.0.1:"+strconv.Itoa(g.hap.tlsPort), &tls.Config{RootCAs: g.ca, NextProtos: []string{"http/1.1"}})
	if err != nil {
		return 0, err.Error(), true
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	go c.Write(req) // HAProxy may answer before it has read it all
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err.Error(), true
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	return resp.StatusCode, string(b), false
}

// tenantEntry returns the gateway's stick-table line of tenant ("" when
// the tenant has none).
func tenantEntry(sock, tenant string) string {
	out, _ := hapCommand(sock, "show table gateway_tenants key "+tenant)
	for line := range strings.Lines(out) {
		if strings.Contains(line, "key="+tenant+" ") {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// tableUsed is how many entries the gateway's stick table holds.
func tableUsed(sock string) int {
	out, _ := hapCommand(sock, "show table")
	for line := range strings.Lines(out) {
		if strings.Contains(line, "table: gateway_tenants,") {
			_, after, _ := strings.Cut(line, "used:")
			n, _ := strconv.Atoi(strings.TrimSpace(after))
			return n
		}
	}
	return -1
}

// hapThreads is HAProxy's thread count (show info: Nbthread), 1 if unknown.
func hapThreads(sock string) int {
	out, _ := hapCommand(sock, "show info")
	for line := range strings.Lines(out) {
		if v, ok := strings.CutPrefix(line, "Nbthread:"); ok {
			if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > 0 {
				return n
			}
		}
	}
	return 1
}

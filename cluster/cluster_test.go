package cluster

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/inferd/inferd/internal/testbed"
)

// cluster is a running local cluster.
type cluster struct {
	t       *testing.T
	dir     string
	inferd  string
	promBin string

	hapPort, hapStats, promPort int

	consul        *testbed.Consul
	haproxy, prom *testbed.Proc
	replicas      []*replica
	figures       []string
}

// replica is one inferd process and its fixed ports and name.
type replica struct {
	name     string
	port     int
	grpcPort int // grpc_listen; every replica its own, as scripts/cluster.sh gives
	cfg      string
	proc     *testbed.Proc
}

func (c *cluster) figure(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	c.figures = append(c.figures, s)
	c.t.Log("FIGURE " + s)
}

func newCluster(t *testing.T) *cluster {
	if testing.Short() {
		t.Skip("cluster test: starts Consul, 3 replicas, HAProxy and Prometheus (skipped under -short)")
	}
	ort := testbed.NeedORT(t)
	c := &cluster{
		t:       t,
		dir:     t.TempDir(),
		promBin: testbed.Tool(t, "INFERD_PROMETHEUS", "prometheus-"+testbed.PrometheusVersion, "prometheus", false),
	}
	haproxy := testbed.Tool(t, "INFERD_HAPROXY", "", "haproxy", true)

	c.inferd = filepath.Join(c.dir, "inferd")
	build := exec.Command("go", "build", "-o", c.inferd, "./cmd/inferd")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/inferd: %v\n%s", err, out)
	}
	t.Cleanup(func() { c.down() })

	c.consul = testbed.NewConsul(t)
	c.hapPort, c.hapStats, c.promPort = testbed.FreePort(t, false), testbed.FreePort(t, false), testbed.FreePort(t, false)

	c.consul.Start()

	models := filepath.Join(c.dir, "models")
	for i := range 3 {
		r := &replica{name: fmt.Sprintf("replica-%d", i+1), port: testbed.FreePort(t, false), grpcPort: testbed.FreePort(t, false)}
		r.cfg = filepath.Join(c.dir, r.name+".yaml")
		yaml := fmt.Sprintf(`listen: "127.0.0.1:%d"
grpc_listen: "127.0.0.1:%d"
runtime: {library: %q, model_dir: %q}
server: {drain_delay: 2s, replica_name: %s}
models:
  - name: tiny
    path: "builtin:tiny"
    device: cpu
    max_batch: 8
    intra_op_threads: 1
    # Requests wait up to 20ms for a batch, so that a replica killed under
    # load has requests in flight for HAProxy to retry elsewhere.
    batcher: {max_delay: 20ms}
register:
  enabled: true
  consul_addr: "127.0.0.1:%d"
  tags: [tiny, cpu]
  check_interval: 1s
  sync_interval: 1s
`, r.port, r.grpcPort, ort, models, r.name, c.consul.HTTP)
		if err := os.WriteFile(r.cfg, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		c.replicas = append(c.replicas, r)
	}

	// HAProxy and Prometheus first: replicas appear in them as they register.
	// The gateway (API keys, TestGateway) is off: these tests are about
	// discovery and failover, as `make demo` runs them.
	hapEnv := []string{
		"HAPROXY_GATEWAY=off",
		"HAPROXY_PORT=" + strconv.Itoa(c.hapPort),
		"HAPROXY_STATS_PORT=" + strconv.Itoa(c.hapStats),
		"CONSUL_DNS_PORT=" + strconv.Itoa(c.consul.DNS),
		"HAPROXY_RUN_DIR=" + c.dir,
	}
	c.haproxy = testbed.Start(t, c.dir, "haproxy", hapEnv, haproxy, hapArgs()...)
	c.mustReach("haproxy", c.haproxy, 10*time.Second, c.stats("/stats"))

	promCfg := filepath.Join(c.dir, "prometheus.yml")
	if err := os.WriteFile(promCfg, []byte(renderPrometheus(t, c.consul.HTTP, c.hapStats, "1s")), 0o644); err != nil {
		t.Fatal(err)
	}
	c.prom = testbed.Start(t, c.dir, "prometheus", nil, c.promBin,
		"--config.file="+promCfg, "--storage.tsdb.path="+filepath.Join(c.dir, "tsdb"),
		"--web.listen-address="+c.promAddr(), "--log.level=warn")
	c.mustReach("prometheus", c.prom, 30*time.Second, "http://"+c.promAddr()+"/-/ready")
	return c
}

// renderPrometheus substitutes the shipped prometheus.yml's default
// addresses and scrape interval, as scripts/cluster.sh does.
func renderPrometheus(t *testing.T, consulHTTP, hapStats int, interval string) string {
	b, err := os.ReadFile(filepath.Join(repoRoot, "configs", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.NewReplacer(
		"127.0.0.1:8500", "127.0.0.1:"+strconv.Itoa(consulHTTP),
		"127.0.0.1:8404", "127.0.0.1:"+strconv.Itoa(hapStats),
		": 2s", ": "+interval,
	).Replace(string(b))
	if !strings.Contains(s, strconv.Itoa(consulHTTP)) || !strings.Contains(s, strconv.Itoa(hapStats)) {
		t.Fatal("configs/prometheus.yml no longer has the default addresses 127.0.0.1:8500 and 127.0.0.1:8404 to substitute")
	}
	return s
}

func (c *cluster) promAddr() string { return "127.0.0.1:" + strconv.Itoa(c.promPort) }
func (c *cluster) hapURL(path string) string {
	return "http://127.0.0.1:" + strconv.Itoa(c.hapPort) + path
}
func (c *cluster) stats(path string) string {
	return "http://127.0.0.1:" + strconv.Itoa(c.hapStats) + path
}
func (c *cluster) consulURL(path string) string {
	return c.consul.URL(path)
}
func (c *cluster) hapSock() string { return filepath.Join(c.dir, "haproxy.sock") }

// mustReach waits for url to answer 200, failing with p's log otherwise.
func (c *cluster) mustReach(name string, p *testbed.Proc, d time.Duration, url string) time.Duration {
	c.t.Helper()
	took, ok := testbed.WaitFor(d, func() bool { return p.Running() && httpOK(url) })
	if !ok {
		c.t.Fatalf("%s not answering %s within %s (running %v):\n%s", name, url, d, p.Running(), p.Tail(30))
	}
	return took
}

func (c *cluster) startReplica(r *replica) {
	r.proc = testbed.Start(c.t, c.dir, r.name, nil, c.inferd, "-config", r.cfg)
}

func (c *cluster) replicaReady(r *replica) bool {
	return r.proc.Running() && httpOK(fmt.Sprintf("http://127.0.0.1:%d/v2/health/ready", r.port))
}

// passing returns the IDs of the inferd instances whose checks pass.
func (c *cluster) passing() []string {
	var entries []struct{ Service struct{ ID string } }
	if err := getJSON(c.consulURL("/v1/health/service/inferd?passing=1"), &entries); err != nil {
		return nil
	}
	var ids []string
	for _, e := range entries {
		ids = append(ids, e.Service.ID)
	}
	return ids
}

// hapUp reports whether HAProxy has the replica on port up.
func (c *cluster) hapUp(port int) bool {
	list, err := hapServers(c.hapSock(), "inferd")
	if err != nil {
		return false
	}
	for _, s := range list {
		if s.port == port && s.up() {
			return true
		}
	}
	return false
}

func (c *cluster) server(port int) (hapServer, bool) {
	list, _ := hapServers(c.hapSock(), "inferd")
	for _, s := range list {
		if s.port == port {
			return s, true
		}
	}
	return hapServer{}, false
}

// down stops what the cluster started, replicas first.
func (c *cluster) down() {
	for _, r := range c.replicas {
		if r.proc != nil {
			r.proc.Stop(syscall.SIGTERM, 10*time.Second)
		}
	}
	var consul *testbed.Proc
	if c.consul != nil {
		consul = c.consul.Proc
	}
	for _, p := range []*testbed.Proc{c.prom, c.haproxy, consul} {
		if p != nil {
			p.Stop(syscall.SIGTERM, 10*time.Second)
		}
	}
	if c.t.Failed() {
		for _, p := range append([]*testbed.Proc{consul, c.haproxy, c.prom}, c.procs()...) {
			if p != nil {
				c.t.Logf("--- %s log (tail):\n%s", p.Name, p.Tail(25))
			}
		}
	}
}

func (c *cluster) procs() []*testbed.Proc {
	var ps []*testbed.Proc
	for _, r := range c.replicas {
		ps = append(ps, r.proc)
	}
	return ps
}

// The whole cluster story on one cluster, in order: registration and
// spread, Prometheus and the dashboard, a crash, a rolling restart and a
// Consul outage, each under load through HAProxy.
func TestCluster(t *testing.T) {
	c := newCluster(t)
	body := testImage()
	classify := c.hapURL("/v2/models/tiny/classify")

	t.Run("register-and-spread", func(t *testing.T) {
		start := time.Now()
		for _, r := range c.replicas {
			c.startReplica(r)
		}
		took, ok := testbed.WaitFor(60*time.Second, func() bool {
			for _, r := range c.replicas {
				if !c.replicaReady(r) {
					return false
				}
			}
			return true
		})
		if !ok {
			t.Fatalf("replicas not ready within %s", took)
		}
		ready := time.Now()
		c.figure("3 replicas started and ready in %s", ready.Sub(start).Round(time.Millisecond))
		took, ok = testbed.WaitFor(10*time.Second, func() bool { return len(c.passing()) == 3 })
		if !ok {
			t.Fatalf("consul has %v passing after %s, want 3", c.passing(), took)
		}
		c.figure("all 3 registered and passing in Consul %s after ready", took.Round(time.Millisecond))

		seen := map[string]bool{}
		took, _ = testbed.WaitFor(5*time.Second, func() bool {
			g := startLoad(classify, body)
			time.Sleep(100 * time.Millisecond) // one short burst per poll
			g.stop()
			for r := range g.byReplica {
				seen[r] = true
			}
			return len(seen) == 3
		})
		since := time.Since(ready)
		if len(seen) != 3 || since > 5*time.Second {
			t.Fatalf("HAProxy reached %v within %s of the replicas being ready, want all 3 within 5s", seen, since)
		}
		c.figure("HAProxy sent traffic to all 3 replicas %s after they were ready", since.Round(time.Millisecond))
	})
	if t.Failed() {
		return
	}

	t.Run("prometheus-and-dashboard", func(t *testing.T) {
		// Some traffic, and some errors, for the dashboard's panels.
		for range 3 {
			if resp, err := probe.Get(c.hapURL("/v2/models/nope")); err == nil {
				resp.Body.Close()
			}
		}
		g := startLoad(classify, body)
		took, ok := testbed.WaitFor(30*time.Second, func() bool {
			v, err := c.promQuery(`count(up{job="inferd"} == 1)`)
			return err == nil && len(v) == 1 && v[0].Value == "3"
		})
		if !ok {
			g.stop()
			v, err := c.promQuery(`up`)
			t.Fatalf("Prometheus up: %v %v after %s", v, err, took)
		}
		c.figure("Prometheus saw up == 1 for all 3 replicas through Consul %s after the load started", took.Round(time.Millisecond))
		up, _ := c.promQuery(`up{job="inferd"}`)
		for _, s := range up {
			if s.Metric["replica"] == "" || s.Metric["device"] != "cpu" {
				t.Errorf("target labels %v: want replica and device from Consul", s.Metric)
			}
		}
		// Rates need two samples of everything in their window.
		var empty []string
		_, ok = testbed.WaitFor(20*time.Second, func() bool {
			empty = c.emptyPanels(t)
			return len(empty) == 0
		})
		g.stop()
		if !ok {
			t.Errorf("dashboard queries with no data: %s", strings.Join(empty, "\n"))
		}
		if g.failed.Load() > 0 {
			t.Errorf("load: %s; errors %v", g, g.errs)
		}
	})

	t.Run("kill-9", func(t *testing.T) {
		victim := c.replicas[1]
		g := startLoad(classify, body)
		time.Sleep(5 * time.Second) // steady load before the crash
		before, _ := c.server(victim.port)
		retries0, redisp0 := hapRetries(c.hapSock(), "inferd")
		okBefore := g.ok.Load()
		killed := time.Now()
		victim.proc.Signal(syscall.SIGKILL)
		took, ok := testbed.WaitFor(10*time.Second, func() bool { return !c.hapUp(victim.port) })
		if !ok {
			t.Errorf("HAProxy still has %s up %s after kill -9", victim.name, took)
		}
		markDown := time.Since(killed)
		time.Sleep(time.Until(killed.Add(15 * time.Second))) // 20s of load in all
		g.stop()
		victim.proc.Wait()
		retries, redisp := hapRetries(c.hapSock(), "inferd")
		c.figure("kill -9 of %s under load: %d failed of %d (%d in flight on it in HAProxy just before; HAProxy retried %d, redispatched %d); HAProxy marked it down after %s; load %s",
			victim.name, g.failed.Load(), g.ok.Load()+g.failed.Load(), before.sessionsCurr,
			retries-retries0, redisp-redisp0, markDown.Round(time.Millisecond), g)
		if f := g.failed.Load(); f > int64(max(before.sessionsCurr, 0)) {
			t.Errorf("%d requests failed, more than the %d in flight on the killed replica: %v", f, before.sessionsCurr, g.errs)
		}
		if g.ok.Load() <= okBefore {
			t.Error("no request succeeded after the kill")
		}

		// Back for the next tests: same port, same Consul ID.
		restarted := time.Now()
		c.startReplica(victim)
		took, ok = testbed.WaitFor(20*time.Second, func() bool { return c.hapUp(victim.port) })
		if !ok {
			t.Fatalf("%s not back in HAProxy after %s:\n%s", victim.name, took, victim.proc.Tail(20))
		}
		c.figure("restarted %s back up in HAProxy %s after start", victim.name, time.Since(restarted).Round(time.Millisecond))
	})
	if t.Failed() {
		return
	}

	t.Run("rolling-restart", func(t *testing.T) {
		g := startLoad(classify, body)
		time.Sleep(2 * time.Second)
		for _, r := range c.replicas {
			start := time.Now()
			r.proc.Stop(syscall.SIGTERM, 30*time.Second)
			stopped := time.Since(start)
			c.startReplica(r)
			took, ok := testbed.WaitFor(20*time.Second, func() bool { return c.hapUp(r.port) })
			if !ok {
				g.stop()
				t.Fatalf("%s not back in HAProxy after %s:\n%s", r.name, took, r.proc.Tail(20))
			}
			c.figure("rolling restart of %s: SIGTERM to exit %s, start to up in HAProxy %s",
				r.name, stopped.Round(time.Millisecond), took.Round(time.Millisecond))
		}
		time.Sleep(time.Second)
		g.stop()
		c.figure("rolling restart of all 3 under load: %d failed; load %s", g.failed.Load(), g)
		if g.failed.Load() != 0 {
			t.Errorf("%d requests failed during the rolling restart: %v", g.failed.Load(), g.errs)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("consul-outage", func(t *testing.T) {
		g := startLoad(classify, body)
		time.Sleep(2 * time.Second)
		c.consul.Stop()
		down := time.Now()
		okAtStop := g.ok.Load()
		time.Sleep(10 * time.Second) // the outage itself
		servedDuring := g.ok.Load() - okAtStop
		c.consul.Start()
		restarted := time.Now()
		took, ok := testbed.WaitFor(30*time.Second, func() bool { return len(c.passing()) == 3 })
		if !ok {
			t.Errorf("after the consul restart %v pass, want 3 (after %s)", c.passing(), took)
		}
		time.Sleep(2 * time.Second) // traffic after the agent is back
		g.stop()
		c.figure("consul stopped %s under load: %d requests served during the outage, %d failed in all; replicas re-registered and passing %s after the agent restarted; load %s",
			restarted.Sub(down).Round(time.Millisecond), servedDuring, g.failed.Load(), took.Round(time.Millisecond), g)
		if servedDuring == 0 {
			t.Error("no request served while consul was down")
		}
		if g.failed.Load() != 0 {
			t.Errorf("%d requests failed around the consul outage: %v", g.failed.Load(), g.errs)
		}
		for _, r := range c.replicas {
			if n := strings.Count(readFile(r.proc.Log), "consul unreachable"); n > 1 {
				t.Errorf("%s warned %d times about consul, want once per outage", r.name, n)
			}
		}
		// HAProxy still has every replica.
		if _, ok := testbed.WaitFor(10*time.Second, func() bool {
			for _, r := range c.replicas {
				if !c.hapUp(r.port) {
					return false
				}
			}
			return true
		}); !ok {
			t.Error("HAProxy lost replicas after the consul outage")
		}
	})

	if path := os.Getenv("INFERD_CLUSTER_FIGURES"); path != "" {
		os.WriteFile(path, []byte(strings.Join(c.figures, "\n")+"\n"), 0o644)
	}
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// promSample is one instant-vector element of a Prometheus query result.
type promSample struct {
	Metric map[string]string
	Value  string
}

func (c *cluster) promQuery(q string) ([]promSample, error) {
	var r struct {
		Status string
		Data   struct {
			ResultType string
			Result     []struct {
				Metric map[string]string
				Value  []any
			}
		}
	}
	if err := getJSON("http://"+c.promAddr()+"/api/v1/query?query="+url.QueryEscape(q), &r); err != nil {
		return nil, err
	}
	var out []promSample
	for _, s := range r.Data.Result {
		v := ""
		if len(s.Value) == 2 {
			v, _ = s.Value[1].(string)
		}
		out = append(out, promSample{Metric: s.Metric, Value: v})
	}
	return out, nil
}

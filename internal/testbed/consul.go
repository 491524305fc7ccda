package testbed

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Consul is a Consul dev agent (in memory, one server, loopback) on ports
// chosen for the test, started with the project's configs/consul-dev.hcl.
type Consul struct {
	// HTTP and DNS are the agent's HTTP API and DNS ports.
	HTTP, DNS int
	serfLAN   int
	serfWAN   int
	server    int
	bin, dir  string
	t         testing.TB
	// Proc is the running agent; nil while stopped.
	Proc *Proc
}

// NewConsul chooses the ports of a dev agent without starting it, so that a
// test can first see what a client does while the agent is down.
func NewConsul(t testing.TB) *Consul {
	t.Helper()
	return &Consul{
		t:    t,
		bin:  ConsulBin(t),
		dir:  t.TempDir(),
		HTTP: FreePort(t, false), DNS: FreePort(t, true),
		serfLAN: FreePort(t, true), serfWAN: FreePort(t, true), server: FreePort(t, false),
	}
}

// StartConsul starts a dev agent and waits for it to elect itself leader.
func StartConsul(t testing.TB) *Consul {
	t.Helper()
	c := NewConsul(t)
	c.Start()
	return c
}

// Addr is the HTTP API address, host:port.
func (c *Consul) Addr() string { return "127.0.0.1:" + strconv.Itoa(c.HTTP) }

// URL is the HTTP API URL of path.
func (c *Consul) URL(path string) string { return "http://" + c.Addr() + path }

// Start starts the agent (again, after Stop: a dev agent comes back empty,
// as after a real agent's data loss) and waits up to 30s for a leader.
func (c *Consul) Start() time.Duration {
	c.t.Helper()
	c.Proc = Start(c.t, c.dir, "consul", nil, c.bin, "agent", "-dev",
		"-config-file", filepath.Join(RepoRoot(), "configs", "consul-dev.hcl"),
		"-http-port", strconv.Itoa(c.HTTP), "-dns-port", strconv.Itoa(c.DNS),
		"-serf-lan-port", strconv.Itoa(c.serfLAN), "-serf-wan-port", strconv.Itoa(c.serfWAN),
		"-server-port", strconv.Itoa(c.server), "-grpc-port", "-1", "-grpc-tls-port", "-1")
	client := &http.Client{Timeout: 2 * time.Second}
	took, ok := WaitFor(30*time.Second, func() bool {
		if !c.Proc.Running() {
			return false
		}
		resp, err := client.Get(c.URL("/v1/status/leader"))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var leader string
		return resp.StatusCode == 200 && json.NewDecoder(resp.Body).Decode(&leader) == nil && leader != ""
	})
	if !ok {
		c.t.Fatalf("consul has no leader after %s (running %v):\n%s", took, c.Proc.Running(), c.Proc.Tail(30))
	}
	return took
}

// Stop stops the agent gracefully (SIGTERM, then SIGKILL after 10s).
func (c *Consul) Stop() {
	if c.Proc != nil {
		c.Proc.Stop(syscall.SIGTERM, 10*time.Second)
	}
}

// RepoRoot is the checkout: two levels up from this file.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

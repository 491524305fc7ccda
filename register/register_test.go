package register

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/inferd/inferd/internal/testbed"
)

// The tests here run the registrar against a real Consul dev agent
// (internal/testbed), stopped and started to play outages and data loss.

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	if took, ok := testbed.WaitFor(d, cond); !ok {
		t.Fatalf("timed out after %s waiting for %s", took.Round(time.Millisecond), what)
	}
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// readiness is the replica side of the agent's HTTP check: a listener
// answering /v2/health/ready with 200 while ready is set, else 503.
type readiness struct {
	port  int
	ready atomic.Bool
}

func serveReadiness(t *testing.T) *readiness {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rd := &readiness{port: ln.Addr().(*net.TCPAddr).Port}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v2/health/ready" || !rd.ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return rd
}

// inspector reads the agent's state through the Consul API.
type inspector struct {
	t      *testing.T
	consul *testbed.Consul
	client *api.Client
}

func inspect(t *testing.T, c *testbed.Consul) inspector {
	t.Helper()
	client, err := api.NewClient(&api.Config{Address: c.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	return inspector{t, c, client}
}

// service returns the agent's copy of the instance; ok is false on a 404.
func (in inspector) service(id string) (*api.AgentService, bool) {
	svc, _, err := in.client.Agent().Service(id, nil)
	if err != nil {
		return nil, false
	}
	return svc, true
}

// agentCheck is a check as /v1/agent/checks shows it; api.AgentCheck
// leaves out Interval, and the agent leaves out the definition, so the URL
// checked is read from Output once the check has run.
type agentCheck struct {
	CheckID, ServiceID, Status, Output, Type, Interval string
}

// checks returns the agent's checks of the instance by ID.
func (in inspector) checks(id string) map[string]agentCheck {
	out := map[string]agentCheck{}
	var all map[string]agentCheck
	resp, err := http.Get(in.consul.URL("/v1/agent/checks"))
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	if json.NewDecoder(resp.Body).Decode(&all) != nil {
		return out
	}
	for cid, c := range all {
		if c.ServiceID == id {
			out[cid] = c
		}
	}
	return out
}

// passing lists the IDs the catalog hands out for the service: what DNS
// and HAProxy see.
func (in inspector) passing(service string) []string {
	entries, _, err := in.client.Health().Service(service, "", true, nil)
	if err != nil {
		return nil
	}
	var ids []string
	for _, e := range entries {
		ids = append(ids, e.Service.ID)
	}
	return ids
}

// The agent is down at start: the registrar warns once and retries with
// backoff; it registers when the agent comes up, the agent's own check then
// takes the replica into the catalog once it is ready; an agent restart
// (a dev agent forgets everything) and an operator's deregistration each
// bring a new registration; Drain puts the instance in maintenance, out of
// the catalog, and Deregister removes it.
func TestRegisterLifecycle(t *testing.T) {
	consul := testbed.NewConsul(t) // ports chosen, agent not started
	in := inspect(t, consul)
	rd := serveReadiness(t)

	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	r, err := New(Config{
		Settings: Settings{ConsulAddr: "http://" + consul.Addr(), Service: "inferd-test", Address: "127.0.0.1",
			Tags: []string{"cpu"}, SyncInterval: 200 * time.Millisecond},
		Port:       rd.port,
		Meta:       Meta([]string{"tiny", "big"}, []string{"cpu", "cpu"}, "0.1.0"),
		MaxBackoff: 200 * time.Millisecond,
		Ready:      rd.ready.Load,
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r.Start(ctx)
	waitFor(t, "the unreachable warning", 5*time.Second, func() bool {
		return strings.Contains(logs.String(), "consul unreachable")
	})
	time.Sleep(800 * time.Millisecond) // several retries fail meanwhile
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Errorf("%d warnings while the agent was down, want 1:\n%s", n, logs.String())
	}

	consul.Start()
	id := r.ID()
	waitFor(t, "registration", 10*time.Second, func() bool { _, ok := in.service(id); return ok })
	svc, _ := in.service(id)
	if svc.Service != "inferd-test" || svc.Port != rd.port || svc.Address != "127.0.0.1" ||
		svc.Meta["models"] != "tiny,big" || svc.Meta["device"] != "cpu" || svc.Meta["version"] != "0.1.0" ||
		strings.Join(svc.Tags, ",") != "cpu" {
		t.Errorf("registration %+v", svc)
	}
	// The agent polls the replica's readiness URL every second; it answers
	// 503 (not ready), so the check is critical.
	wantURL := "http://127.0.0.1:" + strconv.Itoa(rd.port) + "/v2/health/ready"
	waitFor(t, "the agent's first check", 5*time.Second, func() bool {
		return strings.Contains(in.checks(id)["service:"+id].Output, wantURL)
	})
	if c := in.checks(id)["service:"+id]; c.Type != "http" || c.Interval != "1s" || c.Status != api.HealthCritical {
		t.Errorf("readiness check %+v, want http every 1s, critical", c)
	}
	if ids := in.passing("inferd-test"); len(ids) != 0 {
		t.Errorf("not ready yet, but the catalog hands out %v", ids)
	}
	waitFor(t, "the log line when the agent came back", 5*time.Second, func() bool {
		return strings.Contains(logs.String(), "consul reachable again")
	})

	// Ready: the agent's own HTTP check takes it into the catalog.
	rd.ready.Store(true)
	waitFor(t, "a passing check", 10*time.Second, func() bool { return len(in.passing("inferd-test")) == 1 })

	// An agent restart loses the registration; the registrar puts it back,
	// passing at once since the replica is ready.
	consul.Stop()
	consul.Start()
	waitFor(t, "re-registration after the agent restart", 10*time.Second, func() bool {
		_, ok := in.service(id)
		return ok
	})
	if c := in.checks(id)["service:"+id]; c.Status != api.HealthPassing {
		t.Errorf("re-registered with check %+v, want passing (the replica is ready)", c)
	}

	// An operator deregisters it: it comes back within a sync interval.
	lost := strings.Count(logs.String(), "consul agent lost the registration")
	if err := in.client.Agent().ServiceDeregister(id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "re-registration after a deregistration", 5*time.Second, func() bool {
		_, ok := in.service(id)
		return ok
	})
	waitFor(t, "the lost-registration warning", 5*time.Second, func() bool {
		return strings.Count(logs.String(), "consul agent lost the registration") > lost
	})

	r.Drain()
	if c := in.checks(id)["_service_maintenance:"+id]; c.Status != api.HealthCritical {
		t.Errorf("after Drain the maintenance check is %+v, want critical", c)
	}
	// The agent syncs the maintenance check to the catalog, which DNS reads.
	waitFor(t, "the catalog to drop the draining instance", 5*time.Second, func() bool {
		return len(in.passing("inferd-test")) == 0
	})
	if err := in.client.Agent().ServiceDeregister(id); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // several sync intervals: no re-registration while draining
	if _, ok := in.service(id); ok {
		t.Error("re-registered while draining")
	}
	if err := r.Deregister(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Without an address the agent's node address is advertised and the check
// polls loopback; Deregister removes the instance, and a second Deregister
// (already gone) is not an error.
func TestDeregisterRemoves(t *testing.T) {
	consul := testbed.StartConsul(t)
	in := inspect(t, consul)
	rd := serveReadiness(t)
	rd.ready.Store(true)
	r, err := New(Config{Settings: Settings{ConsulAddr: consul.Addr(), ID: "x-1"}, Port: rd.port, Ready: rd.ready.Load}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Start(context.Background())
	waitFor(t, "registration", 5*time.Second, func() bool { _, ok := in.service("x-1"); return ok })
	svc, _ := in.service("x-1")
	if svc.Address != "" || svc.Service != "inferd" {
		t.Errorf("without an address: %+v", svc)
	}
	// Registered passing (the replica was ready), and the agent's own check
	// of the loopback URL agrees.
	wantURL := "http://127.0.0.1:" + strconv.Itoa(rd.port) + "/v2/health/ready"
	waitFor(t, "the agent's first check", 5*time.Second, func() bool {
		c := in.checks("x-1")["service:x-1"]
		return strings.Contains(c.Output, wantURL) && c.Status == api.HealthPassing
	})
	if err := r.Deregister(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := in.service("x-1"); ok {
		t.Error("still registered")
	}
	if err := r.Deregister(context.Background()); err != nil {
		t.Errorf("second Deregister: %v", err)
	}
}

// With the agent down Deregister fails with an error naming the instance,
// within its context's deadline.
func TestDeregisterAgentDown(t *testing.T) {
	consul := testbed.NewConsul(t) // never started
	r, err := New(Config{Settings: Settings{ConsulAddr: consul.Addr(), ID: "x-2"}, Port: 9000}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err = r.Deregister(ctx)
	if err == nil || !strings.Contains(err.Error(), "x-2") {
		t.Errorf("Deregister with the agent down: %v", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Deregister waited out its deadline instead of failing fast: %v", err)
	}
}

func TestListenPort(t *testing.T) {
	for _, c := range []struct {
		in   string
		host string
		port int
		bad  bool
	}{
		{":8000", "", 8000, false},
		{"0.0.0.0:80", "", 80, false},
		{"[::]:81", "", 81, false},
		{"127.0.0.1:9", "127.0.0.1", 9, false},
		{"host.example:8000", "host.example", 8000, false},
		{"8000", "", 0, true},
		{"h:x", "", 0, true},
	} {
		h, p, err := ListenPort(c.in)
		if (err != nil) != c.bad || h != c.host || p != c.port {
			t.Errorf("ListenPort(%q) = %q, %d, %v", c.in, h, p, err)
		}
	}
	if _, err := New(Config{}, nil); err == nil {
		t.Error("New without a port succeeded")
	}
}

// SetMeta (a reload changed the models) reaches the agent at once.
func TestSetMeta(t *testing.T) {
	consul := testbed.StartConsul(t)
	in := inspect(t, consul)
	rd := serveReadiness(t)
	rd.ready.Store(true)
	r, err := New(Config{Settings: Settings{ConsulAddr: consul.Addr(), ID: "meta-1", SyncInterval: time.Minute}, Port: rd.port,
		Meta: Meta([]string{"a"}, []string{"cpu"}, "v"), Ready: rd.ready.Load}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	r.Start(context.Background())
	defer r.Deregister(context.Background())
	waitFor(t, "registration", 5*time.Second, func() bool { _, ok := in.service("meta-1"); return ok })
	r.SetMeta(Meta([]string{"a", "b"}, []string{"cpu", "cuda:0"}, "v"))
	// The sync interval is a minute: only SetMeta's own kick can do it.
	waitFor(t, "the new meta", 5*time.Second, func() bool {
		svc, ok := in.service("meta-1")
		return ok && svc.Meta["models"] == "a,b" && svc.Meta["device"] == "cpu,cuda:0"
	})
}

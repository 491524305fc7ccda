package register

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// fakeAgent is the part of Consul's agent HTTP API the registrar uses.
type fakeAgent struct {
	mu       sync.Mutex
	services map[string]api.AgentServiceRegistration
	maint    map[string]bool
	calls    []string
}

func newFakeAgent() *fakeAgent {
	return &fakeAgent{services: map[string]api.AgentServiceRegistration{}, maint: map[string]bool{}}
}

func (f *fakeAgent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, r.Method+" "+r.URL.Path)
	switch {
	case r.Method == "PUT" && r.URL.Path == "/v1/agent/service/register":
		var reg api.AgentServiceRegistration
		if err := json.NewDecoder(r.Body).Decode(&reg); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		f.services[reg.ID] = reg
	case r.Method == "GET" && strings.HasPrefix(r.URL.Path, "/v1/agent/service/"):
		id := strings.TrimPrefix(r.URL.Path, "/v1/agent/service/")
		reg, ok := f.services[id]
		if !ok {
			http.Error(w, "unknown service ID: "+id, 404)
			return
		}
		json.NewEncoder(w).Encode(api.AgentService{ID: reg.ID, Service: reg.Name, Port: reg.Port})
	case r.Method == "PUT" && strings.HasPrefix(r.URL.Path, "/v1/agent/service/maintenance/"):
		f.maint[strings.TrimPrefix(r.URL.Path, "/v1/agent/service/maintenance/")] = r.URL.Query().Get("enable") == "true"
	case r.Method == "PUT" && strings.HasPrefix(r.URL.Path, "/v1/agent/service/deregister/"):
		delete(f.services, strings.TrimPrefix(r.URL.Path, "/v1/agent/service/deregister/"))
	default:
		http.Error(w, "not faked", 404)
	}
}

func (f *fakeAgent) get(id string) (api.AgentServiceRegistration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.services[id]
	return r, ok
}

func (f *fakeAgent) forget(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.services, id)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
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

// The agent is down at start: the registrar warns once, retries with
// backoff, registers when the agent comes up, registers again when the
// agent forgets it, goes into maintenance on Drain and deregisters.
func TestRegisterLifecycle(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: the agent is down

	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	r, err := New(Config{
		ConsulAddr:   "http://" + addr,
		Port:         8123,
		Address:      "127.0.0.1",
		Tags:         []string{"cpu"},
		Meta:         Meta([]string{"tiny", "big"}, []string{"cpu", "cpu"}, "0.1.0"),
		SyncInterval: 50 * time.Millisecond,
		MaxBackoff:   100 * time.Millisecond,
		Ready:        func() bool { return false },
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
	time.Sleep(300 * time.Millisecond) // several retries fail meanwhile
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Errorf("%d warnings while the agent was down, want 1:\n%s", n, logs.String())
	}

	agent := newFakeAgent()
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	srv := &http.Server{Handler: agent}
	go srv.Serve(ln)
	defer srv.Close()

	id := r.ID()
	waitFor(t, "registration", 5*time.Second, func() bool { _, ok := agent.get(id); return ok })
	reg, _ := agent.get(id)
	if reg.Name != "inferd" || reg.Port != 8123 || reg.Address != "127.0.0.1" || reg.Meta["models"] != "tiny,big" ||
		reg.Meta["device"] != "cpu" || reg.Meta["version"] != "0.1.0" || len(reg.Tags) != 1 {
		t.Errorf("registration %+v", reg)
	}
	c := reg.Check
	if c == nil || c.HTTP != "http://127.0.0.1:8123/v2/health/ready" || c.Interval != "1s" ||
		c.DeregisterCriticalServiceAfter != "1m0s" || c.Status != "critical" {
		t.Errorf("check %+v", c)
	}
	if !strings.Contains(logs.String(), "consul reachable again") {
		t.Error("no log line when the agent came back")
	}

	agent.forget(id) // an agent restart
	waitFor(t, "re-registration", 5*time.Second, func() bool { _, ok := agent.get(id); return ok })

	r.Drain()
	agent.mu.Lock()
	inMaint := agent.maint[id]
	agent.mu.Unlock()
	if !inMaint {
		t.Error("Drain did not put the service in maintenance")
	}
	agent.forget(id)
	time.Sleep(150 * time.Millisecond) // a few sync intervals: no re-registration while draining
	if _, ok := agent.get(id); ok {
		t.Error("re-registered while draining")
	}
	if err := r.Deregister(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestDeregisterRemoves(t *testing.T) {
	agent := newFakeAgent()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: agent}
	go srv.Serve(ln)
	defer srv.Close()
	r, err := New(Config{ConsulAddr: ln.Addr().String(), Port: 9000, ID: "x-1", Ready: func() bool { return true }}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Start(context.Background())
	waitFor(t, "registration", 5*time.Second, func() bool { _, ok := agent.get("x-1"); return ok })
	if reg, _ := agent.get("x-1"); reg.Check.HTTP != "http://127.0.0.1:9000/v2/health/ready" || reg.Address != "" ||
		reg.Check.Status != "passing" {
		t.Errorf("without an address: %+v %+v", reg, reg.Check)
	}
	if err := r.Deregister(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := agent.get("x-1"); ok {
		t.Error("still registered")
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

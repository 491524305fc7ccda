package register

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/inferd/inferd/internal/testbed"
)

// serveGRPCHealth is the replica side of the agent's gRPC check: a real
// gRPC server with grpc.health.v1, NOT_SERVING until the test says.
func serveGRPCHealth(t *testing.T) (*health.Server, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := health.NewServer()
	hs.SetServingStatus("", grpc_health_v1.HealthCheckResponse_NOT_SERVING)
	srv := grpc.NewServer()
	grpc_health_v1.RegisterHealthServer(srv, hs)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return hs, ln.Addr().(*net.TCPAddr).Port
}

// lookupSRV asks the agent's DNS interface for name's SRV records, as
// HAProxy's server-template does; it returns the ports.
func lookupSRV(c *testbed.Consul, name string) []int {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", "127.0.0.1:"+strconv.Itoa(c.DNS))
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, srvs, err := r.LookupSRV(ctx, "", "", name)
	if err != nil {
		return nil
	}
	var ports []int
	for _, s := range srvs {
		ports = append(ports, int(s.Port))
	}
	return ports
}

// A replica serving gRPC is a second service, SERVICE-grpc: same address,
// tags and meta, its own port, and Consul's gRPC check of grpc.health.v1,
// so it enters the catalog (and the SRV record HAProxy resolves) only
// while SERVING, independently of the HTTP check. The HTTP service's meta
// says grpc_port. A lost gRPC registration alone is put back; SetMeta
// reaches both; Drain takes both out of the catalog at once, and
// Deregister removes both.
func TestRegisterGRPC(t *testing.T) {
	consul := testbed.StartConsul(t)
	in := inspect(t, consul)
	rd := serveReadiness(t)
	hs, grpcPort := serveGRPCHealth(t)

	r, err := New(Config{
		Settings: Settings{ConsulAddr: consul.Addr(), Service: "inferd-test", ID: "g-1", Address: "127.0.0.1",
			Tags: []string{"cpu"}, SyncInterval: 200 * time.Millisecond},
		Port:     rd.port,
		GRPCPort: grpcPort,
		Meta:     Meta([]string{"tiny"}, []string{"cpu"}, "0.1.0"),
		Ready:    rd.ready.Load,
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	r.Start(context.Background())
	waitFor(t, "both registrations", 10*time.Second, func() bool {
		_, ok1 := in.service("g-1")
		_, ok2 := in.service("g-1-grpc")
		return ok1 && ok2
	})
	httpSvc, _ := in.service("g-1")
	grpcSvc, _ := in.service("g-1-grpc")
	if httpSvc.Meta["grpc_port"] != strconv.Itoa(grpcPort) || httpSvc.Port != rd.port {
		t.Errorf("HTTP registration %+v, want port %d and meta grpc_port %d", httpSvc, rd.port, grpcPort)
	}
	if grpcSvc.Service != "inferd-test-grpc" || grpcSvc.Port != grpcPort || grpcSvc.Address != "127.0.0.1" ||
		grpcSvc.Meta["models"] != "tiny" || grpcSvc.Meta["grpc_port"] != "" || strings.Join(grpcSvc.Tags, ",") != "cpu" {
		t.Errorf("gRPC registration %+v", grpcSvc)
	}
	// The agent's own gRPC check runs and sees NOT_SERVING.
	waitFor(t, "the agent's first gRPC check", 5*time.Second, func() bool {
		return strings.Contains(in.checks("g-1-grpc")["service:g-1-grpc"].Output, "127.0.0.1:"+strconv.Itoa(grpcPort))
	})
	if c := in.checks("g-1-grpc")["service:g-1-grpc"]; c.Type != "grpc" || c.Interval != "1s" || c.Status != api.HealthCritical {
		t.Errorf("gRPC check %+v, want grpc every 1s, critical (NOT_SERVING)", c)
	}

	// HTTP ready but gRPC NOT_SERVING: each service follows its own check.
	rd.ready.Store(true)
	waitFor(t, "the HTTP service passing", 10*time.Second, func() bool { return len(in.passing("inferd-test")) == 1 })
	if ids := in.passing("inferd-test-grpc"); len(ids) != 0 {
		t.Errorf("gRPC NOT_SERVING, but the catalog hands out %v", ids)
	}
	hs.SetServingStatus("", grpc_health_v1.HealthCheckResponse_SERVING)
	waitFor(t, "the gRPC service passing", 10*time.Second, func() bool { return len(in.passing("inferd-test-grpc")) == 1 })
	// What HAProxy's server-template resolves: one SRV record, the gRPC port.
	waitFor(t, "the SRV record _inferd-test-grpc._tcp.service.consul", 5*time.Second, func() bool {
		ports := lookupSRV(consul, "_inferd-test-grpc._tcp.service.consul")
		return len(ports) == 1 && ports[0] == grpcPort
	})

	// The agent loses only the gRPC registration: it comes back.
	if err := in.client.Agent().ServiceDeregister("g-1-grpc"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the gRPC re-registration", 5*time.Second, func() bool { _, ok := in.service("g-1-grpc"); return ok })

	r.SetMeta(Meta([]string{"tiny", "big"}, []string{"cpu"}, "0.1.0"))
	waitFor(t, "the new meta on both", 5*time.Second, func() bool {
		h, ok1 := in.service("g-1")
		g, ok2 := in.service("g-1-grpc")
		return ok1 && ok2 && h.Meta["models"] == "tiny,big" && g.Meta["models"] == "tiny,big" &&
			h.Meta["grpc_port"] == strconv.Itoa(grpcPort)
	})

	// Drain right after SetMeta may find the sync that registers the new
	// meta still running: that sync puts both in maintenance when it ends.
	r.Drain()
	for _, id := range []string{"g-1", "g-1-grpc"} {
		waitFor(t, "the maintenance check of "+id, 5*time.Second, func() bool {
			return in.checks(id)["_service_maintenance:"+id].Status == api.HealthCritical
		})
	}
	waitFor(t, "the catalog to drop both", 5*time.Second, func() bool {
		return len(in.passing("inferd-test")) == 0 && len(in.passing("inferd-test-grpc")) == 0
	})
	if ports := lookupSRV(consul, "_inferd-test-grpc._tcp.service.consul"); len(ports) != 0 {
		t.Errorf("draining, but DNS still answers the gRPC SRV record with %v", ports)
	}
	if err := r.Deregister(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"g-1", "g-1-grpc"} {
		if _, ok := in.service(id); ok {
			t.Errorf("%s still registered after Deregister", id)
		}
	}
}

// Without GRPCPort nothing changes: one service, no grpc_port meta, and a
// negative port is refused.
func TestRegisterHTTPOnly(t *testing.T) {
	consul := testbed.StartConsul(t)
	in := inspect(t, consul)
	rd := serveReadiness(t)
	r, err := New(Config{Settings: Settings{ConsulAddr: consul.Addr(), ID: "h-1"}, Port: rd.port,
		Meta: Meta([]string{"a"}, []string{"cpu"}, "v")}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	r.Start(context.Background())
	defer r.Deregister(context.Background())
	waitFor(t, "registration", 5*time.Second, func() bool { _, ok := in.service("h-1"); return ok })
	if svc, _ := in.service("h-1"); svc.Meta["grpc_port"] != "" {
		t.Errorf("HTTP-only registration has grpc_port %q", svc.Meta["grpc_port"])
	}
	if _, ok := in.service("h-1-grpc"); ok {
		t.Error("HTTP-only replica registered a gRPC service")
	}
	if _, err := New(Config{Port: 1, GRPCPort: -1}, nil); err == nil {
		t.Error("New with a negative gRPC port succeeded")
	}
}

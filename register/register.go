// Package register announces an inferd replica in a Consul catalog, so that
// HAProxy (Consul DNS SRV records) and Prometheus (consul_sd_configs) find
// it. The replica registers with an HTTP check on /v2/health/ready, so the
// catalog only hands out replicas that are loaded and not draining, and
// with DeregisterCriticalServiceAfter as the safety net for a crash.
//
// A replica that serves gRPC (Config.GRPCPort) is a second service,
// SERVICE-grpc (instance ID-grpc), with the same address, tags and meta and
// Consul's native gRPC check (grpc.health.v1, SERVING once ready), so that
// HAProxy resolves its replicas as _SERVICE-grpc._tcp.service.consul; the
// HTTP service's meta carries grpc_port. Both are registered, put in
// maintenance and deregistered together.
//
// Consul is never required: when the agent cannot be reached the replica
// serves anyway, logs one warning, and keeps trying with backoff. Once
// registered it checks every SyncInterval that the agent still knows it (an
// agent restart, a dev agent above all, forgets its services) and registers
// again if not. At shutdown Drain puts the service in maintenance, which
// takes it out of DNS at once, and Deregister removes it once work is done.
package register

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
)

// Config says what to register and where: the file's Settings (Address
// the advertised address, empty for the agent's node address) and what the
// program knows. Zero values take the defaults of Settings.WithDefaults.
type Config struct {
	Settings
	// Port is the advertised port. Required.
	Port int
	// Meta is copied into the registration, beside Settings.Tags.
	Meta map[string]string
	// CheckURL is the readiness URL the agent polls. Default
	// http://ADDRESS:PORT/v2/health/ready (127.0.0.1 without an address).
	CheckURL string
	// MaxBackoff caps the retry delay while the agent is unreachable.
	// Default SyncInterval (at least 1s): retries start at 250ms and double
	// up to it, so a restarted agent has the replica back within about one
	// sync interval.
	MaxBackoff time.Duration
	// Ready, when set, gives each registration's initial check status:
	// passing when the replica is ready at that moment (it enters DNS
	// without waiting for the agent's first check), else critical.
	Ready func() bool
	// GRPCPort is the advertised gRPC port. When set the replica is also
	// registered as service SERVICE-grpc, instance ID-grpc, with a gRPC
	// health check, and the HTTP service's meta gets grpc_port. Default 0:
	// HTTP only.
	GRPCPort int
	// GRPCCheckAddr is the host:port the agent's gRPC health check dials.
	// Default ADDRESS:GRPCPort (127.0.0.1 without an address).
	GRPCCheckAddr string
	// GRPCTLS makes the gRPC check use TLS, without verifying the
	// certificate (the replica serves gRPC with its tls: certificate).
	// Default false: plaintext h2c, the check fails against a TLS port.
	GRPCTLS bool
}

// GRPCSuffix is appended to the service name and instance ID of the gRPC
// registration: service "inferd" serves gRPC as "inferd-grpc".
const GRPCSuffix = "-grpc"

// Registrar keeps one service instance registered.
type Registrar struct {
	cfg    Config
	agent  *api.Agent
	log    *slog.Logger
	mu     sync.Mutex
	regs   []*api.AgentServiceRegistration // HTTP, then gRPC when GRPCPort is set; under mu
	state  state
	gen    int // bumped by SetMeta
	notify chan struct{}

	stopped chan struct{}
	cancel  context.CancelFunc
}

// callTimeout bounds one call to the agent.
const callTimeout = 3 * time.Second

type state int

const (
	unregistered state = iota
	registered
	draining
)

// New returns a registrar for cfg. It talks to Consul only once Start runs.
func New(cfg Config, log *slog.Logger) (*Registrar, error) {
	if cfg.Port <= 0 {
		return nil, errors.New("register: port is required")
	}
	if cfg.GRPCPort < 0 {
		return nil, fmt.Errorf("register: grpc port %d", cfg.GRPCPort)
	}
	cfg.Settings = cfg.Settings.WithDefaults()
	if cfg.ID == "" {
		host, _ := os.Hostname()
		cfg.ID = fmt.Sprintf("%s-%s-%d", cfg.Service, host, cfg.Port)
	}
	if cfg.CheckURL == "" {
		host := cfg.Address
		if host == "" {
			host = "127.0.0.1"
		}
		cfg.CheckURL = "http://" + net.JoinHostPort(host, strconv.Itoa(cfg.Port)) + "/v2/health/ready"
	}
	if cfg.GRPCPort > 0 && cfg.GRPCCheckAddr == "" {
		host := cfg.Address
		if host == "" {
			host = "127.0.0.1"
		}
		cfg.GRPCCheckAddr = net.JoinHostPort(host, strconv.Itoa(cfg.GRPCPort))
	}
	cfg.MaxBackoff = orDur(cfg.MaxBackoff, max(cfg.SyncInterval, time.Second))
	if log == nil {
		log = slog.Default()
	}

	ac := api.DefaultConfig() // CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, TLS env
	if cfg.ConsulAddr != "" {
		ac.Address = cfg.ConsulAddr
		if u, err := url.Parse(cfg.ConsulAddr); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
			ac.Scheme, ac.Address = u.Scheme, u.Host
		}
	}
	client, err := api.NewClient(ac)
	if err != nil {
		return nil, fmt.Errorf("register: consul client: %w", err)
	}
	r := &Registrar{
		cfg:     cfg,
		agent:   client.Agent(),
		log:     log.With("consul", ac.Address, "service_id", cfg.ID),
		notify:  make(chan struct{}, 1),
		stopped: make(chan struct{}),
	}
	r.regs = r.registrations(cfg.Meta)
	return r, nil
}

// registrations builds the service definitions with meta: the HTTP one,
// then the gRPC one when the replica serves gRPC.
func (r *Registrar) registrations(meta map[string]string) []*api.AgentServiceRegistration {
	cfg := r.cfg
	httpMeta := meta
	if cfg.GRPCPort > 0 {
		httpMeta = make(map[string]string, len(meta)+1)
		for k, v := range meta {
			httpMeta[k] = v
		}
		httpMeta["grpc_port"] = strconv.Itoa(cfg.GRPCPort)
	}
	regs := []*api.AgentServiceRegistration{{
		ID:      cfg.ID,
		Name:    cfg.Service,
		Address: cfg.Address,
		Port:    cfg.Port,
		Tags:    cfg.Tags,
		Meta:    httpMeta,
		Check: &api.AgentServiceCheck{
			CheckID:                        "service:" + cfg.ID,
			Name:                           "inferd readiness",
			HTTP:                           cfg.CheckURL,
			Method:                         "GET",
			Interval:                       cfg.CheckInterval.String(),
			Timeout:                        cfg.CheckTimeout.String(),
			DeregisterCriticalServiceAfter: cfg.DeregisterAfter.String(),
		},
	}}
	if cfg.GRPCPort > 0 {
		id := cfg.ID + GRPCSuffix
		regs = append(regs, &api.AgentServiceRegistration{
			ID:      id,
			Name:    cfg.Service + GRPCSuffix,
			Address: cfg.Address,
			Port:    cfg.GRPCPort,
			Tags:    cfg.Tags,
			Meta:    meta,
			Check: &api.AgentServiceCheck{
				CheckID:                        "service:" + id,
				Name:                           "inferd gRPC readiness (grpc.health.v1)",
				GRPC:                           cfg.GRPCCheckAddr,
				GRPCUseTLS:                     cfg.GRPCTLS,
				TLSSkipVerify:                  cfg.GRPCTLS,
				Interval:                       cfg.CheckInterval.String(),
				Timeout:                        cfg.CheckTimeout.String(),
				DeregisterCriticalServiceAfter: cfg.DeregisterAfter.String(),
			},
		})
	}
	return regs
}

// ids returns the instance IDs registered: HTTP, then gRPC.
func (r *Registrar) ids() []string {
	ids := []string{r.cfg.ID}
	if r.cfg.GRPCPort > 0 {
		ids = append(ids, r.cfg.ID+GRPCSuffix)
	}
	return ids
}

// ID returns the service instance ID (the HTTP one; the gRPC one is
// ID()+GRPCSuffix).
func (r *Registrar) ID() string { return r.cfg.ID }

// Start registers in the background until Drain or Deregister; it never
// blocks on Consul.
func (r *Registrar) Start(ctx context.Context) {
	ctx, r.cancel = context.WithCancel(ctx)
	go r.loop(ctx)
}

func (r *Registrar) loop(ctx context.Context) {
	defer close(r.stopped)
	backoff := 250 * time.Millisecond
	warned := false
	var downSince time.Time
	for {
		wait := r.cfg.SyncInterval
		err := r.sync(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if !warned {
				// One warning per outage; the retries log at debug.
				r.log.Warn("consul unreachable; serving anyway, retrying with backoff", "err", err)
				warned, downSince = true, time.Now()
			} else {
				r.log.Debug("consul still unreachable", "err", err, "retry_in", backoff)
			}
			wait = backoff
			backoff = min(backoff*2, r.cfg.MaxBackoff)
		default:
			if warned {
				r.log.Info("consul reachable again", "down_for", time.Since(downSince).Round(time.Millisecond))
				warned = false
			}
			backoff = 250 * time.Millisecond
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-r.notify:
			t.Stop()
		case <-t.C:
		}
	}
}

// sync registers when the agent lacks the service (or its gRPC twin).
func (r *Registrar) sync(ctx context.Context) error {
	r.mu.Lock()
	st := r.state
	r.mu.Unlock()
	if st == draining {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	q := (&api.QueryOptions{}).WithContext(ctx)
	if st == registered {
		lost, err := r.lost(q)
		if err != nil {
			return err
		}
		if lost == "" {
			return nil
		}
		r.log.Warn("consul agent lost the registration; registering again", "lost", lost)
	}
	start := time.Now()
	r.mu.Lock()
	regs, gen := r.regs, r.gen
	r.mu.Unlock()
	status := api.HealthCritical // until the agent's first check passes
	if r.cfg.Ready != nil && r.cfg.Ready() {
		status = api.HealthPassing
	}
	opts := api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(ctx)
	for _, p := range regs {
		reg, check := *p, *p.Check
		check.Status = status
		reg.Check = &check
		if err := r.agent.ServiceRegisterOpts(&reg, opts); err != nil {
			return fmt.Errorf("register %s: %w", reg.ID, err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state == draining { // Drain ran meanwhile: keep it out of DNS
		go r.maintenance()
		return nil
	}
	if r.gen == gen {
		r.state = registered
	} // else SetMeta ran meanwhile: the next sync registers its meta
	args := []any{"service", r.cfg.Service, "check", r.cfg.CheckURL, "status", status, "interval", r.cfg.CheckInterval}
	if r.cfg.GRPCPort > 0 {
		args = append(args, "grpc_service", r.cfg.Service+GRPCSuffix, "grpc_check", r.cfg.GRPCCheckAddr)
	}
	r.log.Info("registered in consul", append(args, "took", time.Since(start).Round(time.Millisecond))...)
	return nil
}

// lost returns the first instance ID the agent does not have ("" when it
// has them all).
func (r *Registrar) lost(q *api.QueryOptions) (string, error) {
	for _, id := range r.ids() {
		svc, _, err := r.agent.Service(id, q)
		if err == nil && svc != nil {
			continue
		}
		var se api.StatusError
		if err != nil && !(errors.As(err, &se) && se.Code == 404) {
			return "", fmt.Errorf("register: look up service %s: %w", id, err)
		}
		return id, nil
	}
	return "", nil
}

// Drain stops re-registration and puts the instance (and its gRPC twin) in
// maintenance, so that DNS and health queries stop returning it before its
// own readiness checks turn critical. It is the server's drain hook.
func (r *Registrar) Drain() {
	r.mu.Lock()
	was := r.state
	r.state = draining
	r.mu.Unlock()
	if was == registered {
		r.maintenance()
	}
}

func (r *Registrar) maintenance() {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	q := (&api.QueryOptions{}).WithContext(ctx)
	ids := r.ids()
	for _, id := range ids {
		if err := r.agent.EnableServiceMaintenanceOpts(id, "inferd draining", q); err != nil {
			r.log.Warn("consul maintenance failed; the readiness check will fail instead", "id", id, "err", err)
			return
		}
	}
	r.log.Info("consul maintenance on (draining)", "ids", ids, "took", time.Since(start).Round(time.Millisecond))
}

// Deregister stops the loop and removes the instance (and its gRPC twin)
// from the agent. Call it last in shutdown, once work is done.
func (r *Registrar) Deregister(ctx context.Context) error {
	r.mu.Lock()
	r.state = draining
	r.mu.Unlock()
	if r.cancel != nil {
		r.cancel()
		select {
		case <-r.stopped:
		case <-ctx.Done():
		}
	}
	start := time.Now()
	opts := (&api.QueryOptions{}).WithContext(ctx)
	var errs []error
	for _, id := range r.ids() {
		if err := r.agent.ServiceDeregisterOpts(id, opts); err != nil {
			var se api.StatusError
			if !(errors.As(err, &se) && se.Code == 404) {
				errs = append(errs, fmt.Errorf("register: deregister %s: %w", id, err))
			}
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	r.log.Info("deregistered from consul", "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// SetMeta replaces the service meta (after a reload changed the models)
// and registers again with it at once, or on the next attempt while the
// agent is unreachable. Ignored once draining.
func (r *Registrar) SetMeta(meta map[string]string) {
	r.mu.Lock()
	r.regs = r.registrations(meta)
	r.gen++
	if r.state == registered {
		r.state = unregistered
	}
	r.mu.Unlock()
	r.Kick()
}

// Kick asks the loop to verify the registration now (tests, SIGHUP).
func (r *Registrar) Kick() {
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// ListenPort splits a listen address into the host to advertise (empty for
// a wildcard) and the port.
func ListenPort(addr string) (host string, port int, err error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("register: listen address %q: %w", addr, err)
	}
	port, err = strconv.Atoi(p)
	if err != nil || port <= 0 {
		return "", 0, fmt.Errorf("register: listen address %q: no port", addr)
	}
	if ip := net.ParseIP(h); h == "" || (ip != nil && ip.IsUnspecified()) {
		h = ""
	}
	return h, port, nil
}

// Meta builds service meta from the served models ("models", comma
// separated), their devices and the version. Consul meta values are
// strings of at most 512 bytes.
func Meta(models, devices []string, version string) map[string]string {
	clip := func(s string) string {
		if len(s) > 512 {
			return s[:512]
		}
		return s
	}
	return map[string]string{
		"models":  clip(strings.Join(models, ",")),
		"device":  clip(strings.Join(dedup(devices), ",")),
		"version": version,
	}
}

func dedup(xs []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

func orDur(v, def time.Duration) time.Duration {
	if v <= 0 {
		return def
	}
	return v
}

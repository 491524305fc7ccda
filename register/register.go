// Package register announces an inferd replica in a Consul catalog, so that
// HAProxy (Consul DNS SRV records) and Prometheus (consul_sd_configs) find
// it. The replica registers with an HTTP check on /v2/health/ready, so the
// catalog only hands out replicas that are loaded and not draining, and
// with DeregisterCriticalServiceAfter as the safety net for a crash.
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
}

// Registrar keeps one service instance registered.
type Registrar struct {
	cfg    Config
	agent  *api.Agent
	log    *slog.Logger
	reg    *api.AgentServiceRegistration
	mu     sync.Mutex
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
	r.reg = &api.AgentServiceRegistration{
		ID:      cfg.ID,
		Name:    cfg.Service,
		Address: cfg.Address,
		Port:    cfg.Port,
		Tags:    cfg.Tags,
		Meta:    cfg.Meta,
		Check: &api.AgentServiceCheck{
			CheckID:                        "service:" + cfg.ID,
			Name:                           "inferd readiness",
			HTTP:                           cfg.CheckURL,
			Method:                         "GET",
			Interval:                       cfg.CheckInterval.String(),
			Timeout:                        cfg.CheckTimeout.String(),
			DeregisterCriticalServiceAfter: cfg.DeregisterAfter.String(),
		},
	}
	return r, nil
}

// ID returns the service instance ID.
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

// sync registers when the agent does not have the service.
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
		svc, _, err := r.agent.Service(r.cfg.ID, q)
		if err == nil && svc != nil {
			return nil
		}
		var se api.StatusError
		if err != nil && !(errors.As(err, &se) && se.Code == 404) {
			return fmt.Errorf("register: look up service: %w", err)
		}
		r.log.Warn("consul agent lost the registration; registering again")
	}
	start := time.Now()
	r.mu.Lock()
	reg, gen := *r.reg, r.gen
	r.mu.Unlock()
	check := *reg.Check
	check.Status = api.HealthCritical // until the agent's first check passes
	if r.cfg.Ready != nil && r.cfg.Ready() {
		check.Status = api.HealthPassing
	}
	reg.Check = &check
	opts := api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(ctx)
	if err := r.agent.ServiceRegisterOpts(&reg, opts); err != nil {
		return fmt.Errorf("register: %w", err)
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
	r.log.Info("registered in consul", "service", r.cfg.Service, "check", r.cfg.CheckURL, "status", check.Status,
		"interval", r.cfg.CheckInterval, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// Drain stops re-registration and puts the instance in maintenance, so that
// DNS and health queries stop returning it before its own readiness check
// turns critical. It is the server's drain hook.
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
	if err := r.agent.EnableServiceMaintenanceOpts(r.cfg.ID, "inferd draining", q); err != nil {
		r.log.Warn("consul maintenance failed; the readiness check will fail instead", "err", err)
		return
	}
	r.log.Info("consul maintenance on (draining)", "took", time.Since(start).Round(time.Millisecond))
}

// Deregister stops the loop and removes the instance from the agent. Call
// it last in shutdown, once work is done.
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
	if err := r.agent.ServiceDeregisterOpts(r.cfg.ID, opts); err != nil {
		var se api.StatusError
		if errors.As(err, &se) && se.Code == 404 {
			return nil
		}
		return fmt.Errorf("register: deregister %s: %w", r.cfg.ID, err)
	}
	r.log.Info("deregistered from consul", "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// SetMeta replaces the service meta (after a reload changed the models)
// and registers again with it at once, or on the next attempt while the
// agent is unreachable. Ignored once draining.
func (r *Registrar) SetMeta(meta map[string]string) {
	r.mu.Lock()
	reg := *r.reg
	reg.Meta = meta
	r.reg = &reg
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

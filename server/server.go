// Package server is inferd's front ends: over HTTP (fasthttp), the KServe
// v2 / Open Inference Protocol endpoints (JSON and the binary tensor
// extension), image classification and upload endpoints, the web page,
// health, and Prometheus metrics; over gRPC (grpc-go), the protocol's
// GRPCInferenceService with grpc.health.v1 and reflection. Each request is
// parsed in its handler goroutine, its rows handed to the model's batcher
// (or answered from the model's response cache), and the handler blocks
// until its rows come back.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/inferd/inferd/auth"
	"github.com/inferd/inferd/budget"
	"github.com/inferd/inferd/config"
	"github.com/inferd/inferd/host"
	"github.com/inferd/inferd/tlscert"
)

// Version is the server version reported by GET /v2.
var Version = "0.1.0"

// Server serves a set of models over HTTP.
type Server struct {
	cfg     *config.Config
	log     *slog.Logger
	set     *metrics.Set
	http    *fasthttp.Server
	replica string
	// compress: responses may be compressed (server.response_compression).
	compress bool

	models   *host.Set
	loading  atomic.Bool    // LoadModels is opening the configured models
	budget   *budget.Budget // what requests may hold at once (server.memory_limit)
	uploads  *uploads       // images of POST /upload (server.uploads)
	draining atomic.Bool
	stats    *serverMetrics
	// auth checks API keys and counts requests per tenant (auth:).
	auth *auth.Auth

	// secMu guards what LoadSecurity sets: tls (nil: plain HTTP), whether
	// it has loaded (secured), and whether Serve has begun (serving: TLS
	// can no longer be turned on or off).
	secMu            sync.Mutex
	tls              *tlscert.Store
	secured, serving bool

	drainHooks []func()

	// grpc is the KServe v2 gRPC front end (grpc.go), once ServeGRPC runs.
	grpc grpcFront

	// ui keeps recent counters for GET /v2/ui/status (ui.go).
	ui uiState

	shutdownOnce sync.Once
	shutdownErr  error
}

// New returns a server for cfg with no models yet; LoadModels opens them.
// Metrics go to set (nil: a new set).
func New(cfg *config.Config, set *metrics.Set, log *slog.Logger) *Server {
	if set == nil {
		set = metrics.NewSet()
	}
	// HELP and TYPE lines, which promtool and Prometheus's linters want. The
	// switch is global to the metrics package; every inferd set wants it.
	metrics.ExposeMetadata(true)
	if log == nil {
		log = slog.Default()
	}
	s := &Server{cfg: cfg, log: log, set: set, replica: cfg.Server.ReplicaName,
		compress: cfg.Server.ResponseCompression != "off"}
	if s.replica == "" {
		s.replica = defaultReplica(cfg.Listen)
	}
	s.models = host.NewSet(s.env())
	s.stats = newServerMetrics(set)
	s.auth = auth.New(set)
	s.budget = budget.New(int64(cfg.Server.MemoryLimit), 0, set)
	u := cfg.Server.Uploads
	s.uploads = newUploads(u.MaxCount, int64(u.MaxBytes), u.TTL, s.budget)
	s.http = &fasthttp.Server{
		Handler:      s.handle,
		ErrorHandler: s.handleTransportError,
		Name:         "inferd",
		// The reserve above max_connections serves health and metrics.
		Concurrency:  cfg.Server.MaxConnections + reserveConns,
		ReadTimeout:  cfg.Server.ReadTimeout,
		WriteTimeout: cfg.Server.WriteTimeout,
		IdleTimeout:  cfg.Server.IdleTimeout,
		// Bodies are streamed: read (and reserved) by the routes that take
		// one as the bytes arrive, never allocated from Content-Length.
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
		MaxRequestBodySize:           cfg.Server.MaxBodyBytes,
		ReadBufferSize:               readBufferSize,
		NoDefaultServerHeader:        false,
		CloseOnShutdown:              true,
		Logger:                       fasthttpLogger{log},
	}
	return s
}

// readBufferSize bounds a request's line and headers: beyond it a request
// gets 414 (a long URL) or 431 (large headers).
const readBufferSize = 8 << 10

// Budget returns the memory budget requests reserve against.
func (s *Server) Budget() *budget.Budget { return s.budget }

// defaultReplica names a replica by its host name and listen port
// ("gpu-7:8000"), or the host name alone when listen has no port.
func defaultReplica(listen string) string {
	host, _ := os.Hostname()
	if _, port, err := net.SplitHostPort(listen); err == nil && port != "" {
		return host + ":" + port
	}
	return host
}

// Metrics returns the set the server's and its models' metrics live on.
func (s *Server) Metrics() *metrics.Set { return s.set }

// Handler returns the request handler, for tests on an in-memory listener.
func (s *Server) Handler() fasthttp.RequestHandler { return s.handle }

// LoadModels opens every model of the configuration, in order. The server
// is ready once all are.
func (s *Server) LoadModels() error {
	s.loading.Store(true)
	defer s.loading.Store(false)
	for _, c := range s.cfg.Models {
		m, err := host.Open(c, s.env())
		if err != nil {
			return err
		}
		s.models.Add(m)
	}
	return nil
}

// env is what the server's models are opened with.
func (s *Server) env() host.Env {
	return host.Env{Runtime: s.cfg.Runtime, MaxPixels: s.cfg.Server.MaxPixels, Metrics: s.set, Log: s.log}
}

// AddModel serves m after the models already served. The first model is
// the default for /recognize. It is safe to call while the server serves.
func (s *Server) AddModel(m *host.Model) { s.models.Add(m) }

// Reload serves the models of cfgs from now on, without dropping a request
// (host.Set.Reload); refused once the server is shutting down.
func (s *Server) Reload(ctx context.Context, cfgs []config.Model) (host.ReloadResult, error) {
	if s.draining.Load() {
		return host.ReloadResult{}, errors.New("reload: the server is shutting down")
	}
	return s.models.Reload(ctx, cfgs)
}

func (s *Server) model(name string) *host.Model { return s.models.Get(name) }

// Models returns the loaded models in the order they were added (config
// order).
func (s *Server) Models() []*host.Model { return s.models.Models() }

// Replica returns the name sent in the X-Inferd-Replica header.
func (s *Server) Replica() string { return s.replica }

// OnDrain adds f to the hooks Shutdown runs when readiness turns 503, e.g.
// taking the replica out of a service catalog. Hooks run concurrently with
// the drain delay; Shutdown waits for them (bounded by its context) before
// closing the listener. Call it before Shutdown.
func (s *Server) OnDrain(f func()) { s.drainHooks = append(s.drainHooks, f) }

// Ready reports whether the server takes inference requests: every
// configured model is loaded and ready, and the server is not draining.
func (s *Server) Ready() bool {
	if s.draining.Load() {
		return false
	}
	ms := s.models.Models()
	if len(ms) < len(s.cfg.Models) {
		return false
	}
	for _, m := range ms {
		if !m.Ready() {
			return false
		}
	}
	return true
}

// loadSecurityOnce loads the keys file and the certificate
// (LoadSecurity) unless they were loaded; when they do not load, it closes
// ln, which was to serve with them, and returns why.
func (s *Server) loadSecurityOnce(ln net.Listener) error {
	s.secMu.Lock()
	loaded := s.secured
	s.secMu.Unlock()
	if loaded {
		return nil
	}
	if err := s.LoadSecurity(s.cfg); err != nil {
		ln.Close()
		return err
	}
	return nil
}

// Serve serves HTTP on ln until Shutdown, or HTTPS with tls: set.
// Connections are limited per client address
// (server.max_connections_per_client) and in all (max_connections, with a
// reserve for health and metrics), counted before any TLS handshake. It
// loads the keys file and the certificate first (LoadSecurity) unless they
// were loaded; when they do not load, it closes ln and returns why.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.loadSecurityOnce(ln); err != nil {
		return err
	}
	s.secMu.Lock()
	s.serving = true
	store := s.tls
	s.secMu.Unlock()
	lim := newConnLimiter(ln, s.cfg.Server.MaxConnections, s.cfg.Server.MaxConnectionsPerClient, s.stats.connRejected)
	var l net.Listener = lim
	scheme := "http"
	if store != nil {
		l, scheme = &tlsListener{connLimiter: lim, config: store.Config()}, "https"
	}
	s.log.Info("listening", "addr", ln.Addr().String(), "scheme", scheme, "replica", s.replica, "auth", s.auth.Settings().Enabled)
	return s.http.Serve(l)
}

// Shutdown stops the server in order, logging each step's duration:
// readiness goes 503 and the drain delay passes so load balancers move away
// (requests that still arrive meanwhile are served);
// the listener closes and open requests finish; each model's batcher runs
// what is queued and its sessions are freed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() { s.shutdownErr = s.shutdown(ctx) })
	return s.shutdownErr
}

func (s *Server) shutdown(ctx context.Context) error {
	step := func(name string, start time.Time) {
		s.log.Info("shutdown step done", "step", name, "took", time.Since(start).Round(time.Millisecond))
	}
	start := time.Now()
	s.draining.Store(true)
	hooks := make(chan struct{})
	go func() {
		var wg sync.WaitGroup
		for _, f := range s.drainHooks {
			wg.Add(1)
			go func() { defer wg.Done(); f() }()
		}
		wg.Wait()
		close(hooks)
	}()
	if d := s.cfg.Server.DrainDelay; d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
	}
	select {
	case <-hooks:
	case <-ctx.Done():
	}
	step("drain", start)

	start = time.Now()
	var errs []error
	if err := s.http.ShutdownWithContext(ctx); err != nil {
		errs = append(errs, fmt.Errorf("http: %w", err))
	}
	step("http", start)
	if err := s.StopGRPC(ctx); err != nil { // GracefulStop, after the drain; logs its step
		errs = append(errs, fmt.Errorf("grpc: %w", err))
	}

	start = time.Now()
	s.models.Close(ctx, func(name string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("model %s: %w", name, err))
		}
		step("model "+name, start)
		start = time.Now()
	})
	return errors.Join(errs...)
}

type fasthttpLogger struct{ log *slog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...))
}

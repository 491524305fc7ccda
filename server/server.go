// Package server is inferd's HTTP front end: KServe v2 / Open Inference
// Protocol endpoints (JSON and the binary tensor extension), image
// classification endpoints, health, and Prometheus metrics, on fasthttp.
// Each request is parsed in its handler goroutine, its rows handed to the
// model's batcher, and the handler blocks until its rows come back.
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

	"github.com/inferd/inferd/budget"
	"github.com/inferd/inferd/config"
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

	models   atomic.Pointer[modelSet] // replaced whole by AddModel
	loading  atomic.Bool              // LoadModels is opening the configured models
	budget   *budget.Budget           // what requests may hold at once (server.memory_limit)
	addMu    sync.Mutex               // serialises AddModel
	draining atomic.Bool
	stats    *serverMetrics

	drainHooks []func()

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
	s.models.Store(&modelSet{byName: map[string]*Model{}})
	s.stats = newServerMetrics(set)
	s.budget = budget.New(int64(cfg.Server.MemoryLimit), 0, set)
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
		m, err := OpenModel(c, s.cfg.Runtime, s.cfg.Server, s.set, s.log)
		if err != nil {
			return err
		}
		s.AddModel(m)
	}
	return nil
}

// modelSet is the served models, swapped whole so handlers read it without
// a lock while models load behind a listening server.
type modelSet struct {
	byName map[string]*Model
	order  []*Model // in the order added; the first is the default
}

// AddModel serves m. The first model added is the default for /recognize.
// It is safe to call while the server serves.
func (s *Server) AddModel(m *Model) {
	s.addMu.Lock()
	defer s.addMu.Unlock()
	old := s.models.Load()
	next := &modelSet{byName: make(map[string]*Model, len(old.byName)+1), order: append(old.order[:len(old.order):len(old.order)], m)}
	for k, v := range old.byName {
		next.byName[k] = v
	}
	next.byName[m.Name] = m
	s.models.Store(next)
}

func (s *Server) model(name string) *Model { return s.models.Load().byName[name] }

// Models returns the loaded models in the order they were added (config
// order).
func (s *Server) Models() []*Model { return s.models.Load().order }

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
	ms := s.models.Load().order
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

// Serve serves HTTP on ln until Shutdown.
// Connections are limited per client address
// (server.max_connections_per_client) and in all (max_connections, with a
// reserve for health and metrics).
func (s *Server) Serve(ln net.Listener) error {
	s.log.Info("listening", "addr", ln.Addr().String(), "replica", s.replica)
	lim := newConnLimiter(ln, s.cfg.Server.MaxConnections, s.cfg.Server.MaxConnectionsPerClient, s.stats.connRejected)
	return s.http.Serve(lim)
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

	for _, m := range s.Models() {
		start = time.Now()
		if err := m.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("model %s: %w", m.Name, err))
		}
		step("model "+m.Name, start)
	}
	return errors.Join(errs...)
}

type fasthttpLogger struct{ log *slog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...))
}

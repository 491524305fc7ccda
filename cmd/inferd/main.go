// Command inferd serves ONNX image models over HTTP (KServe v2 / Open
// Inference Protocol and an image classification endpoint) with dynamic
// batching on ONNX Runtime, CUDA or CPU.
//
//	inferd [-config inferd.yaml] [-listen :8000] [-grpc-listen :8001] [-consul ADDR] [-check-config]
//	inferd -new-key TENANT
//
// -check-config reports every problem startup would meet short of opening
// the models' sessions (values, flags, the files the config names, the
// inputs and outputs ONNX Runtime reads in the model files), one line
// each, and exits 1 (0 and "config ok" when none).
//
// The KServe v2 gRPC endpoint listens on grpc_listen (-grpc-listen; default
// :8001, "off" for none) from the start, its health NOT_SERVING until the
// models are loaded; at shutdown it stops gracefully after the HTTP drain.
//
// With register.enabled (or -consul) the replica registers itself in Consul
// once its models are loaded and deregisters at the end of its shutdown.
// SIGTERM or SIGINT shuts down gracefully; SIGHUP reloads the models of the
// config file without dropping a request, and re-reads the auth section
// with its keys file and the TLS certificate (the other sections need a
// restart). -new-key prints a new API key for a tenant, once, and the
// entry that adds its hash to the keys file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/inferd/inferd/auth"
	"github.com/inferd/inferd/budget"
	"github.com/inferd/inferd/config"
	"github.com/inferd/inferd/gpustat"
	"github.com/inferd/inferd/register"
	"github.com/inferd/inferd/server"
)

func main() {
	if err := run(); err != nil {
		// One line per problem: a config check reports them all.
		for line := range strings.SplitSeq(err.Error(), "\n") {
			fmt.Fprintln(os.Stderr, "inferd:", line)
		}
		os.Exit(1)
	}
}

func run() error {
	path := flag.String("config", "", "YAML config file (default: none, serve the generated resnet50)")
	listen := flag.String("listen", "", "listen address, overriding the config's listen (default :8000)")
	grpcListen := flag.String("grpc-listen", "", `gRPC listen address, overriding the config's grpc_listen (default :8001; "off": no gRPC)`)
	device := flag.String("device", "", "device for every model: auto, cpu or cuda:N, overriding the config")
	check := flag.Bool("check-config", false, "check the config and flags as startup does, short of opening sessions (values, the files it names, the model files' inputs and outputs), print every problem, and exit")
	consul := flag.String("consul", "", "register in the Consul agent at this HTTP address (turns register.enabled on)")
	verbose := flag.Bool("v", false, "log debug lines")
	newKey := flag.String("new-key", "", "print a new API key for this tenant, once, and the keys file entry of its hash, and exit")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (flags only; see -h)", flag.Args())
	}
	if *newKey != "" {
		return auth.WriteNewKey(os.Stdout, *newKey)
	}

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	fl := overrides{listen: *listen, grpcListen: *grpcListen, consul: *consul, device: *device}
	cfg, err := load(*path, fl)
	if err != nil {
		return err
	}
	if *check {
		fmt.Printf("config ok: %d model(s), listen %s, grpc_listen %s\n", len(cfg.Models), cfg.Listen, or(cfg.GRPCListen, "off"))
		return nil
	}

	// SIGHUP from the start, so that one sent while models load waits for
	// them rather than killing the process; SIGTERM and SIGINT keep their
	// default (exit) until the replica is up.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	srv := server.New(cfg, nil, log)
	defer gpustat.Register(srv.Metrics(), log).Close() // per-GPU series on /metrics; one log line and none without NVML
	if err := srv.LoadSecurity(cfg); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	served := make(chan error, 2)
	go func() { served <- srv.Serve(ln) }()
	// A taken default :8001 (no grpc_listen key, no flag) is not fatal.
	grpcAddr, err := serveGRPC(cfg, cfg.GRPCListenDefaulted() && *grpcListen == "", srv, served, log)
	if err != nil {
		ln.Close()
		return err
	}
	if err := srv.LoadModels(); err != nil {
		ln.Close()
		return err
	}
	// The Go soft memory limit follows the request budget from here on,
	// above the heap the loaded models left, and a spike is handed back.
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	soft := budget.FollowRuntime(srv.Budget().Limit(), int64(ms.HeapInuse))
	reclaim, stopReclaim := context.WithCancel(context.Background())
	defer stopReclaim()
	go srv.Budget().Reclaim(reclaim, time.Second)
	log.Info("ready", "addr", ln.Addr().String(), "grpc_addr", grpcAddr, "memory_limit_mib", srv.Budget().Limit()>>20, "go_memory_limit_mib", soft>>20)

	var reg *register.Registrar
	if cfg.Register.Enabled {
		if reg, err = newRegistrar(cfg, ln.Addr().String(), grpcAddr, srv, log); err != nil {
			ln.Close()
			return err
		}
		srv.OnDrain(reg.Drain)
		reg.Start(context.Background())
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
wait:
	for {
		select {
		case <-hup:
			reload(*path, fl, cfg, srv, reg, log)
		case s := <-sig:
			log.Info("shutting down", "signal", s.String())
			break wait
		case err := <-served:
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Server.DrainDelay+cfg.Server.ShutdownTimeout)
	defer cancel()
	start := time.Now()
	err = srv.Shutdown(ctx)
	if reg != nil {
		// Deregister last: work is done, the check has long been critical.
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		if derr := reg.Deregister(dctx); derr != nil {
			log.Warn("consul deregistration failed; the agent drops the service after register.deregister_after", "err", derr)
		}
		dcancel()
	}
	log.Info("stopped", "took", time.Since(start).Round(time.Millisecond))
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shutdown: %w (raise server.shutdown_timeout)", err)
	}
	return err
}

// serveGRPC listens on grpc_listen and serves gRPC there until Shutdown,
// sending Serve's error to served; it returns the bound address ("off"
// when gRPC is off). When the address is the default one (defaulted) and
// it is taken, the replica goes on with HTTP only, saying so; an address
// the config or -grpc-listen set must bind.
func serveGRPC(cfg *config.Config, defaulted bool, srv *server.Server, served chan<- error, log *slog.Logger) (string, error) {
	if cfg.GRPCListen == "" {
		return "off", nil
	}
	ln, err := net.Listen("tcp", cfg.GRPCListen)
	if err != nil {
		if defaulted {
			log.Warn("gRPC off: its default address is taken; set grpc_listen (or off)", "grpc_listen", cfg.GRPCListen, "err", err)
			return "off", nil
		}
		return "", fmt.Errorf("grpc_listen: %w", err)
	}
	go func() {
		if err := srv.ServeGRPC(ln); err != nil {
			served <- fmt.Errorf("grpc: %w", err)
		}
	}()
	return ln.Addr().String(), nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// newRegistrar builds the Consul registration for the replica listening on
// addr (the bound address, so ":0" works) and, unless grpcAddr is "off",
// serving gRPC on grpcAddr (bound too): a second service, SERVICE-grpc,
// that Drain and Deregister handle with the first.
func newRegistrar(cfg *config.Config, addr, grpcAddr string, srv *server.Server, log *slog.Logger) (*register.Registrar, error) {
	rc := cfg.Register
	host, port, err := register.ListenPort(addr)
	if err != nil {
		return nil, err
	}
	if lh, _, err := register.ListenPort(cfg.Listen); err == nil && lh == "" {
		host = "" // a wildcard listen: advertise the agent's node address
	}
	if rc.Address != "" {
		host = rc.Address
	}
	rc.Address = host
	rcfg := register.Config{Settings: rc, Port: port, Meta: modelMeta(srv), Ready: srv.Ready}
	if grpcAddr != "off" {
		if _, rcfg.GRPCPort, err = register.ListenPort(grpcAddr); err != nil {
			return nil, err
		}
		rcfg.GRPCTLS = cfg.TLS.Enabled() // gRPC serves TLS with the same certificate
	}
	return register.New(rcfg, log)
}

// overrides are the command-line flags that override the config file.
type overrides struct{ listen, grpcListen, consul, device string }

// load reads the config file at path (none: the default), applies the
// flags, and checks the result as -check-config does: every value, the
// files it names and what the model files say. Startup and SIGHUP reloads
// check the same way. A flag with a bad value is said, naming the flag,
// with every problem of the file; it is not applied.
func load(path string, fl overrides) (*config.Config, error) {
	cfg := config.Default()
	if path != "" {
		var err error
		if cfg, err = config.Read(path); err != nil {
			return nil, err
		}
	}
	flagErr := fl.apply(cfg)
	return cfg, errors.Join(flagErr, cfg.Check())
}

// apply sets the flags given on cfg. A -listen or -device that the config
// could not take is an error naming the flag, and leaves the config's
// value as it was.
func (o overrides) apply(cfg *config.Config) error {
	var errs []error
	if o.listen != "" {
		if err := config.CheckListen(o.listen); err != nil {
			errs = append(errs, fmt.Errorf("-%w", err))
		} else {
			cfg.Listen = o.listen
		}
	}
	switch o.grpcListen {
	case "":
	case "off":
		cfg.GRPCListen = ""
	default:
		if err := config.CheckListen(o.grpcListen); err != nil {
			errs = append(errs, fmt.Errorf("-grpc-%w", err))
		} else {
			cfg.GRPCListen = o.grpcListen
		}
	}
	if o.consul != "" {
		cfg.Register.Enabled = true
		cfg.Register.ConsulAddr = o.consul
	}
	if o.device != "" {
		if err := config.CheckDevice(o.device); err != nil {
			errs = append(errs, fmt.Errorf("-%w", err))
		} else {
			for i := range cfg.Models {
				cfg.Models[i].Device = o.device
			}
		}
	}
	return errors.Join(errs...)
}

// modelMeta is the Consul service meta of the models srv serves.
func modelMeta(srv *server.Server) map[string]string {
	var models, devices []string
	for _, m := range srv.Models() {
		models = append(models, m.Name)
		devices = append(devices, m.Device().String())
	}
	return register.Meta(models, devices, server.Version)
}

// reload re-reads the config file on SIGHUP and serves its models: added,
// changed and removed ones without dropping a request (server.Reload); and
// its auth section, keys file and TLS certificate (server.LoadSecurity).
// The other sections need a restart, and the log says which changed. A
// file that does not load, or a model that does not open, changes nothing.
func reload(path string, fl overrides, cur *config.Config, srv *server.Server, reg *register.Registrar, log *slog.Logger) {
	if path == "" {
		log.Warn("SIGHUP: no -config file to reload; serving the built-in default as before")
		return
	}
	start := time.Now()
	next, err := load(path, fl)
	if err != nil {
		log.Error("reload failed; still serving the previous models", "err", err)
		return
	}
	var restart []string
	for name, same := range map[string]bool{
		"listen":   next.Listen == cur.Listen && next.GRPCListen == cur.GRPCListen,
		"runtime":  reflect.DeepEqual(next.Runtime, cur.Runtime),
		"server":   reflect.DeepEqual(next.Server, cur.Server),
		"register": reflect.DeepEqual(next.Register, cur.Register),
	} {
		if !same {
			restart = append(restart, name)
		}
	}
	if len(restart) > 0 {
		slices.Sort(restart)
		log.Warn("reload applies models, auth and the TLS certificate only: restart the replica for the other changes", "changed", restart)
	}
	if err := srv.LoadSecurity(next); err != nil {
		log.Error("reload of auth or tls failed; what failed serves as before", "err", err)
	} else {
		log.Info("reloaded auth and tls", "auth", next.Auth.Enabled, "tenants", len(srv.Auth().Tenants()), "tls", next.TLS.Enabled())
	}
	ctx, cancel := context.WithTimeout(context.Background(), cur.Server.ShutdownTimeout)
	defer cancel()
	res, err := srv.Reload(ctx, next.Models)
	if err != nil {
		log.Error("reload failed", "err", err)
		if len(res.Added)+len(res.Replaced)+len(res.Removed)+len(res.Kept) == 0 {
			return
		}
	}
	log.Info("reloaded", "added", res.Added, "replaced", res.Replaced, "removed", res.Removed, "kept", res.Kept,
		"took", time.Since(start).Round(time.Millisecond))
	if reg != nil {
		reg.SetMeta(modelMeta(srv))
	}
}

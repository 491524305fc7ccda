// Command inferd serves ONNX image models over HTTP (KServe v2 / Open
// Inference Protocol and an image classification endpoint) with dynamic
// batching on ONNX Runtime, CUDA or CPU.
//
//	inferd [-config inferd.yaml] [-listen :8000] [-check-config]
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
	"syscall"
	"time"

	"github.com/inferd/inferd/config"
	"github.com/inferd/inferd/server"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "inferd:", err)
		os.Exit(1)
	}
}

func run() error {
	path := flag.String("config", "", "YAML config file (default: none, serve the generated resnet50)")
	listen := flag.String("listen", "", "listen address, overriding the config's listen (default :8000)")
	device := flag.String("device", "", "device for every model: auto, cpu or cuda:N, overriding the config")
	check := flag.Bool("check-config", false, "validate the config and exit")
	verbose := flag.Bool("v", false, "log debug lines")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (flags only; see -h)", flag.Args())
	}

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	cfg := config.Default()
	if *path != "" {
		var err error
		if cfg, err = config.Load(*path); err != nil {
			return err
		}
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	if *device != "" {
		for i := range cfg.Models {
			cfg.Models[i].Device = *device
		}
		if err := cfg.Validate(); err != nil {
			return err
		}
	}
	if *check {
		fmt.Printf("config ok: %d model(s), listen %s\n", len(cfg.Models), cfg.Listen)
		return nil
	}

	srv := server.New(cfg, nil, log)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	if err := srv.LoadModels(); err != nil {
		ln.Close()
		return err
	}
	log.Info("ready", "addr", ln.Addr().String())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case s := <-sig:
		log.Info("shutting down", "signal", s.String())
	case err := <-served:
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Server.DrainDelay+cfg.Server.ShutdownTimeout)
	defer cancel()
	start := time.Now()
	err = srv.Shutdown(ctx)
	log.Info("stopped", "took", time.Since(start).Round(time.Millisecond))
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shutdown: %w (raise server.shutdown_timeout)", err)
	}
	return err
}

// Package testserver boots an in-process inferd serving the tiny model on
// a loopback port, for the load tester's tests.
package testserver

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inferd/inferd/config"
	"github.com/inferd/inferd/internal/testbed"
	"github.com/inferd/inferd/server"
)

var (
	dirOnce sync.Once
	dir     string
	dirErr  error
)

// modelDir is one temporary directory per test binary for the generated
// model (the OS cleans it; the tiny model is a few hundred kilobytes).
func modelDir() (string, error) {
	dirOnce.Do(func() { dir, dirErr = os.MkdirTemp("", "inferd-loadtest") })
	return dir, dirErr
}

// Start serves the tiny model as "tiny" (max_batch 8, cpu) on
// 127.0.0.1:0 and returns its base URL; the server shuts down when the test
// ends. It skips the test without ONNX Runtime (testbed.NeedORT).
func Start(t testing.TB) string {
	t.Helper()
	return StartModels(t, "tiny")
}

// StartModels is Start serving the tiny model under each of names, in that
// (config) order: the first answers /recognize.
func StartModels(t testing.TB, names ...string) string {
	t.Helper()
	testbed.NeedORT(t)
	var yaml strings.Builder
	yaml.WriteString("models:\n")
	for _, name := range names {
		fmt.Fprintf(&yaml, "  - name: %s\n    path: builtin:tiny\n    device: cpu\n    max_batch: 8\n", name)
	}
	cfg, err := config.Parse([]byte(yaml.String()))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Runtime.ModelDir, err = modelDir(); err != nil {
		t.Fatal(err)
	}
	s := server.New(cfg, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := s.LoadModels(); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// ClosedURL returns the URL of a loopback port nothing listens on.
func ClosedURL(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close()
	return url
}

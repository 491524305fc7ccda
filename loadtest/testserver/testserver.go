// Package testserver boots an in-process inferd serving the tiny model on
// a loopback port (and gRPC on another, StartGRPC), for the load tester's
// tests.
package testserver

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inferd/inferd/auth"
	"github.com/inferd/inferd/config"
	"github.com/inferd/inferd/internal/testbed"
	"github.com/inferd/inferd/server"
	"github.com/inferd/inferd/tlscert"
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
	return start(t, false, GRPCOptions{}, names).URL
}

// GRPCOptions are the settings of StartGRPC's server.
type GRPCOptions struct {
	// Key, when not empty, is the one API key the server takes
	// ("authorization: Bearer KEY"); /metrics stays open.
	Key string
	// TLS serves both protocols over TLS with a certificate of a test CA.
	TLS bool
}

// GRPCServer is a server StartGRPC started.
type GRPCServer struct {
	// URL is the HTTP base URL (https:// with TLS).
	URL string
	// Addr is the gRPC host:port.
	Addr string
	// CAFile is the PEM file of the CA that signed the certificate (TLS).
	CAFile string
}

// StartGRPC is Start also serving KServe v2 gRPC on another 127.0.0.1:0
// port, with o's key and TLS.
func StartGRPC(t testing.TB, o GRPCOptions) *GRPCServer {
	t.Helper()
	return start(t, true, o, []string{"tiny"})
}

func start(t testing.TB, withGRPC bool, o GRPCOptions, names []string) *GRPCServer {
	t.Helper()
	testbed.NeedORT(t)
	gs := &GRPCServer{}
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
	if o.Key != "" {
		keys := filepath.Join(t.TempDir(), "keys.yaml")
		yaml := fmt.Sprintf("tenants:\n  load: {keys: [%s], models: [\"*\"]}\n", auth.HashKey(o.Key))
		if err := os.WriteFile(keys, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg.Auth = auth.Settings{Enabled: true, KeysFile: keys}
	}
	scheme := "http://"
	if o.TLS {
		certs := testbed.NewCerts(t, t.TempDir())
		cfg.TLS = tlscert.Settings{Cert: certs.CertFile, Key: certs.KeyFile}
		scheme, gs.CAFile = "https://", certs.CAFile
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
	if withGRPC {
		gln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go s.ServeGRPC(gln)
		gs.Addr = gln.Addr().String()
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	gs.URL = scheme + ln.Addr().String()
	return gs
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

package testserver

import (
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// Gateway is an https front of a test server that wants an API key, as
// the HAProxy gateway does.
type Gateway struct {
	// URL is the front's https base URL.
	URL string
	// CAFile is a PEM file of the CA its certificate chains to.
	CAFile string
	// Refused counts requests without the key, answered 401.
	Refused atomic.Int64
	// Probes counts keyed GETs of /v2/models/... and /metrics (the
	// requests around a load), Load keyed POSTs.
	Probes, Load atomic.Int64
}

// StartGateway serves backend (a Start URL) over TLS on 127.0.0.1:0,
// answering 401 to a request without "Authorization: Bearer key".
func StartGateway(t testing.TB, backend, key string) *Gateway {
	t.Helper()
	target, err := url.Parse(backend)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	g := &Gateway{}
	front := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+key {
			g.Refused.Add(1)
			w.Header().Set("WWW-Authenticate", "Bearer")
			http.Error(w, `{"error":"missing or unknown API key"}`, http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodPost && r.URL.Path != "/v2/repository/index" {
			g.Load.Add(1)
		} else {
			g.Probes.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	// A client without the CA fails the handshake: tests expect it.
	front.Config.ErrorLog = log.New(io.Discard, "", 0)
	front.StartTLS()
	t.Cleanup(front.Close)
	g.URL = front.URL
	g.CAFile = filepath.Join(t.TempDir(), "ca.pem")
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: front.Certificate().Raw})
	if err := os.WriteFile(g.CAFile, ca, 0o644); err != nil {
		t.Fatal(err)
	}
	return g
}

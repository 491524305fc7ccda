package server

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/inferd/inferd/config"
	"github.com/inferd/inferd/internal/testbed"
	"github.com/inferd/inferd/tlscert"
)

// startTLS serves cfg over TLS with a certificate of a CA made for the
// test, on a loopback TCP port.
func startTLS(t *testing.T, mod func(*config.Config)) (*Server, string, *testbed.Certs, *config.Config) {
	t.Helper()
	certs := testbed.NewCerts(t, t.TempDir())
	cfg := authConfig(t, func(c *config.Config) {
		c.TLS = tlscert.Settings{Cert: certs.CertFile, Key: certs.KeyFile}
		if mod != nil {
			mod(c)
		}
	})
	s, addr := startTCP(t, cfg)
	return s, addr, certs, cfg
}

// tlsClient is an HTTPS client that trusts certs' CA, at TLS versions min
// to max, on new connections each time. It offers h2 and http/1.1 by
// ALPN.
func tlsClient(certs *testbed.Certs, min, max uint16) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: certs.Pool, MinVersion: min, MaxVersion: max},
		DisableKeepAlives: true,
		ForceAttemptHTTP2: true,
	}}
}

// TLS 1.2 and 1.3 are served, with the API keys on top; 1.0 and 1.1 fail
// their handshake; plain HTTP on the port gets no answer.
func TestTLSVersions(t *testing.T) {
	s, addr, certs, _ := startTLS(t, nil)
	base := "https://" + addr
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		c := tlsClient(certs, v, v)
		resp, err := c.Get(base + "/v2/health/live")
		if err != nil {
			t.Fatalf("%s: %v", tls.VersionName(v), err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.TLS.Version != v || resp.TLS.NegotiatedProtocol != "http/1.1" {
			t.Errorf("%s: %d, version %s, ALPN %q", tls.VersionName(v), resp.StatusCode, tls.VersionName(resp.TLS.Version), resp.TLS.NegotiatedProtocol)
		}
		if r := call(t, c, base, "GET", "/v2/models/tiny", nil); r.code != 401 {
			t.Errorf("%s without a key: %d", tls.VersionName(v), r.code)
		}
		if r := call(t, c, base, "POST", "/v2/models/tiny/infer", jsonInfer(1, floats(3*224*224, 0.1)), "Authorization", "Bearer "+keyB); r.code != 200 {
			t.Errorf("%s, infer with a key: %d %s", tls.VersionName(v), r.code, r.body)
		}
	}
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		_, err := tlsClient(certs, v, v).Get(base + "/v2/health/live")
		if err == nil || !strings.Contains(err.Error(), "protocol version") {
			t.Errorf("%s: %v, want a protocol version alert", tls.VersionName(v), err)
		}
	}
	if resp, err := rawExchange(t, addr, nil, "GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n", 5*time.Second); err == nil {
		t.Errorf("plain HTTP on the TLS port answered %d", resp.StatusCode())
	}
	// Three failed handshakes, counted as such, not as HTTP requests.
	var m bytes.Buffer
	if _, ok := testbed.WaitFor(5*time.Second, func() bool {
		m.Reset()
		s.Metrics().WritePrometheus(&m)
		return strings.Contains(m.String(), `inferd_http_connections_rejected_total{reason="tls_handshake"} 3`+"\n")
	}); !ok || strings.Contains(m.String(), `code="400"`) {
		t.Errorf("failed handshakes counted wrong:\n%s", m.String())
	}
}

// A client that opens a connection and never completes its handshake is
// dropped within server.read_timeout, silent or halfway through its hello.
func TestTLSHandshakeTimeout(t *testing.T) {
	_, addr, _, _ := startTLS(t, func(c *config.Config) { c.Server.ReadTimeout = 500 * time.Millisecond })
	for _, sent := range []string{"", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, sent)
		start := time.Now()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = io.Copy(io.Discard, c)
		if d := time.Since(start); err != nil || d > 2*time.Second {
			t.Errorf("a handshake stalled after %d bytes: closed after %v (%v), want within read_timeout 500ms", len(sent), d, err)
		}
	}
}

// Connection limits count TCP connections before the handshake: a client
// holding its cap in half-open handshakes gets the health-only reserve,
// over TLS.
func TestTLSConnectionLimits(t *testing.T) {
	_, addr, certs, _ := startTLS(t, func(c *config.Config) { c.Server.MaxConnectionsPerClient = 2 })
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	get := func(path string) *fasthttp.Response {
		t.Helper()
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: certs.Pool, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\nX-API-Key: "+keyB+"\r\n\r\n")
		var resp fasthttp.Response
		if err := resp.Read(bufio.NewReader(c)); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		return &resp
	}
	if r := get("/v2/health/ready"); r.StatusCode() != 200 || !r.ConnectionClose() {
		t.Errorf("health over the reserve: %d", r.StatusCode())
	}
	if r := get("/v2/models/tiny"); r.StatusCode() != 503 || !strings.Contains(string(r.Body()), "max_connections_per_client") {
		t.Errorf("work over the reserve: %d %s", r.StatusCode(), r.Body())
	}
}

// The request head is checked on the decrypted bytes as on plain HTTP: a
// bare LF is a 400 at once.
func TestTLSBareLF(t *testing.T) {
	_, addr, certs, _ := startTLS(t, nil)
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: certs.Pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	io.WriteString(c, "GET /v2/health/live HTTP/1.1\nHost: x\n\n")
	var resp fasthttp.Response
	if err := resp.Read(bufio.NewReader(c)); err != nil || resp.StatusCode() != 400 || time.Since(start) > time.Second {
		t.Errorf("a bare-LF request over TLS: %v %d after %v", err, resp.StatusCode(), time.Since(start))
	}
}

// SIGHUP's LoadSecurity re-reads the certificate: new handshakes get the
// new one, a connection open before keeps working, files that do not load
// keep the one there, and TLS cannot be turned off without a restart.
func TestTLSCertificateReload(t *testing.T) {
	s, addr, certs, cfg := startTLS(t, nil)
	serial := func(c *http.Client) int64 {
		t.Helper()
		resp, err := c.Get("https://" + addr + "/v2/health/live")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body) // read whole: the connection is kept
		resp.Body.Close()
		return resp.TLS.PeerCertificates[0].SerialNumber.Int64()
	}
	kept := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: certs.Pool}}}
	if got := serial(kept); got != 2 {
		t.Fatalf("serial %d", got)
	}
	fresh := tlsClient(certs, tls.VersionTLS12, tls.VersionTLS13)
	certs.Renew(3)
	if err := s.LoadSecurity(cfg); err != nil {
		t.Fatal(err)
	}
	if got := serial(fresh); got != 3 {
		t.Errorf("a new connection after the reload: serial %d, want 3", got)
	}
	if got := serial(kept); got != 2 {
		t.Errorf("the connection open before: serial %d, want 2 (same connection)", got)
	}
	bad := *cfg
	bad.TLS.Key = cfg.Auth.KeysFile // not a key
	if err := s.LoadSecurity(&bad); err == nil || !strings.HasPrefix(err.Error(), "tls.cert ") {
		t.Errorf("a bad key file: %v", err)
	}
	off := *cfg
	off.TLS = tlscert.Settings{}
	if err := s.LoadSecurity(&off); err == nil || err.Error() != "tls: turning TLS on or off needs a restart; serving HTTPS as before" {
		t.Errorf("TLS off while serving: %v", err)
	}
	if got := serial(fresh); got != 3 {
		t.Errorf("after failed reloads: serial %d, want 3", got)
	}
}

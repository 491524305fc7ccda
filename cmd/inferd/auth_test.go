package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/inferd/inferd/auth"
	"github.com/inferd/inferd/internal/testbed"
)

// A lone replica as its own gateway, the real binary: keys made by
// -new-key, HTTPS with a CA made for the test that the client verifies,
// and a SIGHUP that revokes a key and renews the certificate while
// serving.
func TestLoneReplicaKeysAndTLS(t *testing.T) {
	bin := buildServing(t)
	dir := t.TempDir()

	// -new-key prints the key once and the entry that adds its hash.
	out, err := exec.Command(bin, "-new-key", "team-a").Output()
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)\n  (inferd_\S+)\n.*\n      - ([0-9a-f]{64})\n$`).FindStringSubmatch(string(out))
	if m == nil || auth.HashKey(m[1]) != m[2] {
		t.Fatalf("-new-key printed:\n%s", out)
	}
	keyA, hashA := m[1], m[2]
	if out, err := exec.Command(bin, "-new-key", "other").CombinedOutput(); exitCode(err) != 1 || !strings.Contains(string(out), `tenant "other"`) {
		t.Errorf("-new-key other: exit %d\n%s", exitCode(err), out)
	}

	certs := testbed.NewCerts(t, dir)
	keys := filepath.Join(dir, "keys.yaml")
	writeKeys := func(hashes string) {
		t.Helper()
		if err := os.WriteFile(keys, []byte("tenants:\n  team-a: {keys: ["+hashes+"], models: [\"tiny*\"], rate: 1000}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeKeys(hashA)
	port := testbed.FreePort(t, false)
	cfg := filepath.Join(dir, "inferd.yaml")
	os.WriteFile(cfg, fmt.Appendf(nil, `listen: 127.0.0.1:%d
runtime: {model_dir: %q}
models:
  - {name: tiny, path: "builtin:tiny", device: cpu, max_batch: 4}
auth: {enabled: true, keys_file: %q}
tls: {cert: %q, key: %q}
`, port, dir, keys, certs.CertFile, certs.KeyFile), 0o644)
	if out, err := exec.Command(bin, "-check-config", "-config", cfg).CombinedOutput(); err != nil {
		t.Fatalf("-check-config: %v\n%s", err, out)
	}
	p := testbed.Start(t, dir, "inferd", nil, bin, "-config", cfg)
	base := fmt.Sprintf("https://127.0.0.1:%d", port)
	client := func(max uint16) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			DisableKeepAlives: true,
			TLSClientConfig:   &tls.Config{RootCAs: certs.Pool, MaxVersion: max},
		}}
	}
	c := client(0)
	get := func(path, key string) (int, int64) {
		req, _ := http.NewRequest("GET", base+path, nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, 0
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.TLS.PeerCertificates[0].SerialNumber.Int64()
	}
	if _, ok := testbed.WaitFor(60*time.Second, func() bool { code, _ := get("/v2/health/ready", ""); return code == 200 }); !ok {
		t.Fatalf("not ready over HTTPS:\n%s", p.Tail(20))
	}
	if !strings.Contains(p.Tail(20), "scheme=https") {
		t.Errorf("the log does not say HTTPS:\n%s", p.Tail(20))
	}
	for _, c := range []struct {
		path, key string
		want      int
	}{
		{"/v2/models/tiny", "", 401},
		{"/v2/models/tiny", "inferd_nope", 401},
		{"/v2/models/tiny", keyA, 200},
		{"/v2/models/resnet50", keyA, 403},
	} {
		if code, _ := get(c.path, c.key); code != c.want {
			t.Errorf("GET %s with key %.12q: %d, want %d", c.path, c.key, code, c.want)
		}
	}
	if _, err := client(tls.VersionTLS11).Get(base + "/v2/health/live"); err == nil {
		t.Error("a TLS 1.1 client was served")
	}

	// Revoke team-a's key for a new one and renew the certificate: one
	// SIGHUP, and within a second the old key is refused and new
	// handshakes get the new certificate.
	key2, hash2, _ := auth.NewKey()
	writeKeys(hash2)
	certs.Renew(3)
	p.Signal(syscall.SIGHUP)
	took, ok := testbed.WaitFor(5*time.Second, func() bool { code, _ := get("/v2/models/tiny", keyA); return code == 401 })
	if !ok || took > time.Second {
		t.Errorf("the revoked key was refused after %v (refused: %v):\n%s", took, ok, p.Tail(10))
	}
	if code, serial := get("/v2/models/tiny", key2); code != 200 || serial != 3 {
		t.Errorf("after SIGHUP: the new key %d, certificate serial %d (want 200, 3):\n%s", code, serial, p.Tail(10))
	}
	p.Signal(syscall.SIGTERM)
	p.Wait()
	if code := p.ExitCode(); code != 0 {
		t.Errorf("exit %d:\n%s", code, p.Tail(10))
	}
}

package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/inferd/inferd/internal/testbed"
)

// run runs a program and fails the test with its output on error.
func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// configs/haproxy.cfg passes `haproxy -c` and has what the cluster relies
// on: as the cluster tests run it (gateway off, plain HTTP only) and as
// make cluster does (gateway on with the shipped empty maps, TLS, with or
// without the plain front end).
func TestHAProxyConfig(t *testing.T) {
	haproxy := testbed.Tool(t, "INFERD_HAPROXY", "", "haproxy", true)
	cfg := filepath.Join(repoRoot, "configs", "haproxy.cfg")
	cert := selfSignedPEM(t)
	base := []string{"HAPROXY_STATS_PORT=18081", "CONSUL_DNS_PORT=18600", "HAPROXY_RUN_DIR=" + t.TempDir()}
	tlsOn := []string{"HAPROXY_TLS_BIND=127.0.0.1:18443", "HAPROXY_TLS_CERT=" + cert,
		"HAPROXY_GATEWAY_DIR=" + filepath.Join(repoRoot, "configs", "gateway")}
	for _, c := range []struct {
		name string
		env  []string
	}{
		{"gateway off, plain", []string{"HAPROXY_GATEWAY=off", "HAPROXY_PORT=18080"}},
		{"gateway on, plain and TLS", append([]string{"HAPROXY_PORT=18080"}, tlsOn...)},
		{"gateway on, TLS only", tlsOn},
		{"gateway on, plain, TLS and gRPC", append([]string{"HAPROXY_PORT=18080", "HAPROXY_GRPC_PORT=18513"}, tlsOn...)},
		{"gateway off, gRPC only", []string{"HAPROXY_GATEWAY=off", "HAPROXY_GRPC_PORT=18513"}},
	} {
		// Only the variables given: unset ones turn front ends off.
		cmd := exec.Command(haproxy, "-c", "-f", cfg)
		cmd.Env = append(append([]string{"PATH=" + os.Getenv("PATH")}, base...), c.env...)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Configuration file is valid") {
			t.Errorf("%s: haproxy -c: %v\n%s", c.name, err, out)
		}
	}
	b, _ := os.ReadFile(cfg)
	text := string(b)
	for _, want := range []string{
		"accepted_payload_size", "hold valid 1s", "_inferd._tcp.service.consul", "resolve-opts allow-dup-ip",
		"init-addr none", "option httpchk GET /v2/health/ready", "balance leastconn",
		"retry-on conn-failure empty-response", " 503", "option redispatch", "tune.bufsize",
		"option http-buffer-request", "prometheus-exporter", "stats uri", "stats socket",
		"${CONSUL_DNS_PORT}", "${HAPROXY_PORT}", "${HAPROXY_STATS_PORT}", "${HAPROXY_RUN_DIR}",
		// The gateway.
		"ssl-min-ver TLSv1.2", "alpn h2,http/1.1", "${HAPROXY_TLS_BIND}", "${HAPROXY_TLS_CERT}",
		"sha2(256),hex,lower", "keys.map", "models.map", "rates.map", "concurrency.map",
		"del-header X-Inferd-Tenant", "set-header X-Inferd-Tenant", "WWW-Authenticate Bearer",
		"hdr Retry-After 1", "gpc0_rate(1s)", "sc-inc-gpc0", "path_beg /v2/health/",
		// gRPC: its own front end port, its backend from Consul's inferd-grpc.
		"${HAPROXY_GRPC_PORT}\" proto h2", "_inferd-grpc._tcp.service.consul", "use_backend inferd_grpc if grpc",
		"path_beg /grpc.health.v1.Health/",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("haproxy.cfg lacks %q", want)
		}
	}
}

// selfSignedPEM writes a throwaway certificate and key for haproxy -c.
func selfSignedPEM(t *testing.T) string {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "server.pem")
	b := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})...)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// configs/prometheus.yml passes promtool, shipped and as rendered for a
// cluster. Debian's promtool lacks consul_sd_configs: this wants the one
// make setup builds.
func TestPrometheusConfig(t *testing.T) {
	promtool := testbed.Tool(t, "INFERD_PROMTOOL", "promtool-"+testbed.PrometheusVersion, "promtool", false)
	run(t, nil, promtool, "check", "config", filepath.Join(repoRoot, "configs", "prometheus.yml"))
	rendered := filepath.Join(t.TempDir(), "prometheus.yml")
	if err := os.WriteFile(rendered, []byte(renderPrometheus(t, 28500, 28404, "1s")), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, nil, promtool, "check", "config", rendered)
}

// configs/consul-dev.hcl passes `consul validate` (with the data_dir that
// -dev would supply).
func TestConsulConfig(t *testing.T) {
	consul := testbed.ConsulBin(t)
	dir := t.TempDir()
	extra := filepath.Join(dir, "dev.hcl")
	if err := os.WriteFile(extra, []byte(fmt.Sprintf("data_dir = %q\nserver = true\nbootstrap_expect = 1\n", dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, nil, consul, "validate", filepath.Join(repoRoot, "configs", "consul-dev.hcl"), extra)
}

// dashboard is the part of a Grafana dashboard JSON the tests read.
type dashboard struct {
	Title      string
	UID        string
	Panels     []panel
	Templating struct {
		List []struct{ Name string }
	}
}

// panel is a dashboard panel, or a row: a collapsed row holds its panels,
// which Grafana queries only when the row is opened.
type panel struct {
	ID      int
	Type    string
	Title   string
	Targets []struct {
		RefID string
		Expr  string
	}
	Panels []panel
}

// all returns the dashboard's panels, those of collapsed rows included.
func (d dashboard) all() []panel {
	var ps []panel
	for _, p := range d.Panels {
		ps = append(ps, p)
		ps = append(ps, p.Panels...)
	}
	return ps
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "configs", "grafana", "inferd-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	return d
}

// grafanaVars replaces the dashboard's variables as Grafana would for "All".
var grafanaVars = strings.NewReplacer("$__rate_interval", "15s", "$__interval", "5s", "$model", ".*")

// The dashboard parses, covers what the issue asks for, and every query is
// valid PromQL (promtool check rules, offline).
func TestDashboard(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || len(d.Panels) < 6 {
		t.Fatalf("dashboard %q: uid %q, %d panels", d.Title, d.UID, len(d.Panels))
	}
	var all strings.Builder
	rules := "groups:\n  - name: dashboard\n    rules:\n"
	ids := map[int]bool{}
	for _, p := range d.all() {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if len(p.Targets) == 0 && p.Type != "row" {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			e := grafanaVars.Replace(tg.Expr)
			all.WriteString(e + "\n")
			rules += fmt.Sprintf("      - record: dashboard:panel%d_%s\n        expr: %s\n", p.ID, tg.RefID, strconv.Quote(e))
		}
	}
	for _, want := range []string{
		"histogram_quantile(0.99, sum by (le) (rate(inferd_http_request_duration_seconds_bucket",
		"inferd_http_requests_total", "inferd_batcher_batch_size", "inferd_batcher_queue_depth",
		`code!~"2.."`, "inferd_batcher_requests_rejected_total",
		"inferd_gpu_utilization_ratio", "inferd_gpu_memory_used_bytes", "inferd_gpu_power_watts",
		"inferd_gpu_energy_joules_total", "inferd_gpu_temperature_celsius", "inferd_gpu_sm_clock_hertz",
	} {
		if !strings.Contains(all.String(), want) {
			t.Errorf("no panel queries %s", want)
		}
	}
	// Rules need no service discovery: Debian's promtool will do.
	promtool := testbed.Tool(t, "INFERD_PROMTOOL", "promtool-"+testbed.PrometheusVersion, "promtool", true)
	f := filepath.Join(t.TempDir(), "rules.yml")
	if err := os.WriteFile(f, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, nil, promtool, "check", "rules", f)
}

// emptyPanels runs every dashboard query against the cluster's Prometheus
// and returns those with no data (no series, or only NaN). The panels of
// collapsed rows are left out: the GPU row has no data on a host without
// an NVIDIA driver, which is every cluster test's.
func (c *cluster) emptyPanels(t *testing.T) []string {
	var empty []string
	for _, p := range loadDashboard(t).Panels {
		for _, tg := range p.Targets {
			q := grafanaVars.Replace(tg.Expr)
			v, err := c.promQuery(q)
			if err != nil {
				empty = append(empty, fmt.Sprintf("%s/%s: %v", p.Title, tg.RefID, err))
				continue
			}
			data := false
			for _, s := range v {
				if f, err := strconv.ParseFloat(s.Value, 64); err == nil && !math.IsNaN(f) {
					data = true
				}
			}
			if !data {
				empty = append(empty, fmt.Sprintf("%s/%s: %s -> %v", p.Title, tg.RefID, q, v))
			}
		}
	}
	return empty
}

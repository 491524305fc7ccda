package cluster

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

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

// configs/haproxy.cfg passes `haproxy -c` and has what the cluster relies on.
func TestHAProxyConfig(t *testing.T) {
	haproxy := testbed.Tool(t, "INFERD_HAPROXY", "", "haproxy", true)
	cfg := filepath.Join(repoRoot, "configs", "haproxy.cfg")
	out := run(t, []string{"HAPROXY_PORT=18080", "HAPROXY_STATS_PORT=18081", "CONSUL_DNS_PORT=18600",
		"HAPROXY_RUN_DIR=" + t.TempDir()}, haproxy, "-c", "-f", cfg)
	if !strings.Contains(out, "Configuration file is valid") {
		t.Errorf("haproxy -c: %s", out)
	}
	b, _ := os.ReadFile(cfg)
	text := string(b)
	for _, want := range []string{
		"accepted_payload_size", "hold valid 1s", "_inferd._tcp.service.consul", "resolve-opts allow-dup-ip",
		"init-addr none", "option httpchk GET /v2/health/ready", "balance leastconn",
		"retry-on conn-failure empty-response", " 503", "option redispatch", "tune.bufsize",
		"option http-buffer-request", "prometheus-exporter", "stats uri", "stats socket",
		"${CONSUL_DNS_PORT}", "${HAPROXY_PORT}", "${HAPROXY_STATS_PORT}", "${HAPROXY_RUN_DIR}",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("haproxy.cfg lacks %q", want)
		}
	}
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
	Title  string
	UID    string
	Panels []struct {
		ID      int
		Title   string
		Targets []struct {
			RefID string
			Expr  string
		}
	}
	Templating struct {
		List []struct{ Name string }
	}
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
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if len(p.Targets) == 0 {
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
// and returns those with no data (no series, or only NaN).
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

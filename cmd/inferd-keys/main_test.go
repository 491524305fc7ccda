package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/inferd/inferd/internal/testbed"
)

// shipped copies configs/gateway (the empty maps scripts/cluster.sh
// installs) into a temporary directory.
func shipped(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(testbed.RepoRoot(), "configs", "gateway")
	names, err := filepath.Glob(filepath.Join(src, "*.map"))
	if err != nil || len(names) != len(mapFiles) {
		t.Fatalf("configs/gateway has %v (%v), want the %d maps %v", names, err, len(mapFiles), mapFiles)
	}
	for _, p := range names {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(p)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// The shipped maps load, empty, and saving them changes nothing.
func TestShippedMaps(t *testing.T) {
	dir := shipped(t)
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if len(s.Keys) != 0 || len(s.Tenants) != 0 {
		t.Errorf("shipped maps hold %d keys, %d tenants", len(s.Keys), len(s.Tenants))
	}
	for _, name := range mapFiles {
		want, _ := os.ReadFile(filepath.Join(testbed.RepoRoot(), "configs", "gateway", name))
		if string(want) != headers[name] {
			t.Errorf("configs/gateway/%s differs from what inferd-keys writes for an empty map:\n%s", name, want)
		}
	}
}

func TestParseModels(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string // joined rules, or "error"
	}{
		{"tiny", "tiny"},
		{"tiny, resnet*,tiny", "tiny,resnet*"}, // duplicates once
		{"tiny,*", "*"},                        // * covers the rest
		{"", "error"},
		{" , ", "error"},
		{"a/b", "error"},   // a path, not a name
		{"a b", "error"},   // spaces break the Runtime API
		{"a%20b", "error"}, // the gateway refuses percent-encoded paths
		{"*tiny", "error"}, // only prefixes
		{"ti*ny", "error"}, // only prefixes
		{"a;b", "error"},   // a Runtime API command separator
		{"a\\b", "error"},  // a Runtime API escape
		{"mod.el_1-x", "mod.el_1-x"},
	} {
		got, err := ParseModels(c.in)
		if g := strings.Join(got, ","); (err != nil) != (c.want == "error") || err == nil && g != c.want {
			t.Errorf("ParseModels(%q) = %q, %v; want %s", c.in, g, err, c.want)
		}
	}
}

func TestFenceKey(t *testing.T) {
	for rule, want := range map[string]string{"*": "t/", "res*": "t/res", "tiny": "t/tiny/"} {
		if got := fenceKey("t", rule); got != want {
			t.Errorf("fenceKey(t, %q) = %q, want %q", rule, got, want)
		}
	}
}

// A tenant and keys survive a save and a reopen; the keys are nowhere on
// disk; revoke finds keys by themselves, by ID, and refuses an ambiguous ID.
func TestStore(t *testing.T) {
	dir := shipped(t)
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetTenant("acme", nil, 10, -1); err == nil {
		t.Error("a new tenant without models accepted")
	}
	if _, err := s.SetTenant("acme", []string{"*"}, -1, -1); err == nil {
		t.Error("a new tenant without a rate accepted")
	}
	for _, bad := range []string{"", "-x", "a b", "a/b", strings.Repeat("a", 65)} {
		if _, err := s.SetTenant(bad, []string{"*"}, 1, 0); err == nil {
			t.Errorf("tenant name %q accepted", bad)
		}
	}
	if _, err := s.SetTenant("acme", []string{"tiny", "res*"}, 10, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetTenant("ops", []string{"*"}, 0, 0); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	k1, _, err := s.NewKey("acme", now)
	if err != nil {
		t.Fatal(err)
	}
	k2, _, _ := s.NewKey("acme", now)
	k3, _, _ := s.NewKey("ops", now)
	if _, _, err := s.NewKey("nobody", now); err == nil {
		t.Error("a key for a tenant that does not exist")
	}
	if !strings.HasPrefix(k1, KeyPrefix) || len(k1) != 46 || k1 == k2 {
		t.Errorf("keys %q %q", k1, k2)
	}
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	s.Close()

	for _, name := range mapFiles {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		for _, k := range []string{k1, k2, k3, strings.TrimPrefix(k1, KeyPrefix)} {
			if bytes.Contains(b, []byte(k)) {
				t.Errorf("%s holds a key in clear", name)
			}
		}
	}
	keys, _ := os.ReadFile(filepath.Join(dir, keysMap))
	if !strings.Contains(string(keys), Hash(k1)+" acme\n") || !strings.Contains(string(keys), "# added 2026-11-30T12:00:00Z\n") {
		t.Errorf("keys.map:\n%s", keys)
	}
	models, _ := os.ReadFile(filepath.Join(dir, modelsMap))
	for _, line := range []string{"acme/tiny/ tiny\n", "acme/res res*\n", "ops/ *\n"} {
		if !strings.Contains(string(models), line) {
			t.Errorf("models.map lacks %q:\n%s", line, models)
		}
	}

	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if a := s.Tenants["acme"]; a == nil || strings.Join(a.Models, ",") != "tiny,res*" || a.Rate != 10 || a.Concurrency != 2 {
		t.Errorf("acme after a reopen: %+v", a)
	}
	if len(s.Keys) != 3 || s.Keys[0].Added != "2026-11-30T12:00:00Z" {
		t.Errorf("keys after a reopen: %+v", s.Keys)
	}
	if gone, err := s.Revoke(k1); err != nil || len(gone) != 1 || gone[0].Hash != Hash(k1) {
		t.Errorf("revoke by key: %v %v", gone, err)
	}
	id := Key{Hash: Hash(k2)}.ID()
	if gone, err := s.Revoke(strings.ToUpper(id)); err != nil || len(gone) != 1 || gone[0].Hash != Hash(k2) {
		t.Errorf("revoke by ID: %v %v", gone, err)
	}
	if _, err := s.Revoke(k1); err == nil {
		t.Error("revoking a key twice: no error")
	}
	s.Keys = append(s.Keys, Key{Hash: "abcdef12" + strings.Repeat("0", 56), Tenant: "ops"}, Key{Hash: "abcdef12" + strings.Repeat("1", 56), Tenant: "ops"})
	if _, err := s.Revoke("abcdef12"); err == nil || !strings.Contains(err.Error(), "names 2 keys") {
		t.Errorf("an ambiguous ID: %v", err)
	}
	if gone, err := s.RevokeTenant("ops", true); err != nil || len(gone) != 3 || s.Tenants["ops"] != nil {
		t.Errorf("revoke -tenant ops -drop: %v %v", gone, err)
	}
}

// A bad map line is an error that names the file, not a silent skip.
func TestBadMap(t *testing.T) {
	for name, line := range map[string]string{
		keysMap:   "abc acme\n",
		ratesMap:  "acme fast\n",
		modelsMap: "acme *\n",
	} {
		dir := shipped(t)
		os.WriteFile(filepath.Join(dir, name), []byte(line), 0o600)
		if s, err := Open(dir); err == nil || !strings.Contains(err.Error(), name) {
			if s != nil {
				s.Close()
			}
			t.Errorf("%s with %q: %v", name, line, err)
		}
	}
}

// runCLI runs the command as main does.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return o.String(), e.String(), code
}

func TestUsage(t *testing.T) {
	dir := shipped(t)
	for _, args := range [][]string{
		{},
		{"-dir", dir, "nope"},
		{"-dir", dir, "add"},
		{"-dir", dir, "add", "t", "-models", "a b", "-rate", "1"},
		{"-dir", dir, "add", "t", "-rate", "-5"},
		{"-dir", dir, "revoke"},
		{"-dir", dir, "list", "extra"},
	} {
		if _, _, code := runCLI(t, args...); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
	if _, e, code := runCLI(t, "-dir", filepath.Join(dir, "missing"), "list"); code != 1 || !strings.Contains(e, "not a directory") {
		t.Errorf("a missing directory: %d %s", code, e)
	}
}

// hap is the shipped configs/haproxy.cfg, gateway on, on a plain port,
// with no replicas (Consul DNS points nowhere): enough for the maps and
// the gateway's answers, which come before any backend.
type hap struct {
	port int
	sock string
	proc *testbed.Proc
}

func startHAProxy(t *testing.T, dir string) *hap {
	t.Helper()
	bin := testbed.Tool(t, "INFERD_HAPROXY", "", "haproxy", true)
	run := t.TempDir()
	h := &hap{port: testbed.FreePort(t, false), sock: filepath.Join(run, "haproxy.sock")}
	env := []string{
		"HAPROXY_PORT=" + strconv.Itoa(h.port),
		"HAPROXY_STATS_PORT=" + strconv.Itoa(testbed.FreePort(t, false)),
		"CONSUL_DNS_PORT=" + strconv.Itoa(testbed.FreePort(t, true)),
		"HAPROXY_RUN_DIR=" + run,
		"HAPROXY_GATEWAY_DIR=" + dir,
	}
	h.proc = testbed.Start(t, run, "haproxy", env, bin, "-db", "-f", filepath.Join(testbed.RepoRoot(), "configs", "haproxy.cfg"))
	if _, ok := testbed.WaitFor(10*time.Second, func() bool {
		c, err := net.Dial("unix", h.sock)
		if err == nil {
			c.Close()
		}
		return err == nil
	}); !ok {
		t.Fatalf("haproxy did not start:\n%s", h.proc.Tail(20))
	}
	return h
}

// status is the gateway's answer to a GET of the tiny model with key: 503
// (no replica) once the gateway lets it through.
func (h *hap) status(t *testing.T, key string) int {
	req, _ := http.NewRequest("GET", "http://127.0.0.1:"+strconv.Itoa(h.port)+"/v2/models/tiny", nil)
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// The commands against a real HAProxy: a key works as soon as add returns
// and stops as soon as revoke returns; list sees drift and sync repairs
// it; a stopped HAProxy reads the files when it starts again.
func TestAgainstHAProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("starts HAProxy (skipped under -short)")
	}
	dir := shipped(t)
	h := startHAProxy(t, dir)
	cli := func(args ...string) (string, string, int) {
		return runCLI(t, append([]string{"-dir", dir, "-socket", h.sock}, args...)...)
	}
	key, e, code := cli("add", "acme", "-models", "tiny", "-rate", "100")
	key = strings.TrimSpace(key)
	if code != 0 || !strings.Contains(e, "running HAProxy updated") {
		t.Fatalf("add: %d %q %s", code, key, e)
	}
	if st := h.status(t, key); st != 503 {
		t.Errorf("a new key: %d, want 503 (through the gateway, no replica)", st)
	}
	if st := h.status(t, key+"x"); st != 401 {
		t.Errorf("an unknown key: %d, want 401", st)
	}
	// Narrow the tenant: the model fence follows at once.
	if _, e, code := cli("tenant", "acme", "-models", "resnet*"); code != 0 {
		t.Fatalf("tenant: %s", e)
	}
	if st := h.status(t, key); st != 403 {
		t.Errorf("after -models resnet*: %d, want 403", st)
	}
	cli("tenant", "acme", "-models", "tiny")

	// Drift: an entry removed behind inferd-keys' back.
	if _, err := (Runtime{Socket: h.sock}).Do("del map #" + mapIndex(t, h.sock, keysMap) + " " + Hash(key)); err != nil {
		t.Fatal(err)
	}
	if out, _, _ := cli("list"); !strings.Contains(out, "1 differences") || !strings.Contains(out, "keys.map "+Hash(key)+": add acme") {
		t.Errorf("list after drift:\n%s", out)
	}
	if out, _, code := cli("sync"); code != 0 || !strings.Contains(out, "add") {
		t.Errorf("sync: %d %s", code, out)
	}
	if st := h.status(t, key); st != 503 {
		t.Errorf("after sync: %d, want 503", st)
	}
	if out, _, _ := cli("list"); !strings.Contains(out, "haproxy: in sync") {
		t.Errorf("list after sync:\n%s", out)
	}

	out, _, code := cli("revoke", Key{Hash: Hash(key)}.ID())
	if code != 0 || !strings.Contains(out, "revoked key") {
		t.Fatalf("revoke: %d %s", code, out)
	}
	if st := h.status(t, key); st != 401 {
		t.Errorf("a revoked key: %d, want 401", st)
	}

	// HAProxy stopped: the files change alone; a restart reads them.
	h.proc.Stop(9, 5*time.Second)
	key2, e, code := cli("add", "acme")
	key2 = strings.TrimSpace(key2)
	if code != 0 || !strings.Contains(e, "not running") {
		t.Errorf("add with HAProxy stopped: %d %s", code, e)
	}
	h = startHAProxy(t, dir)
	if st := h.status(t, key2); st != 503 {
		t.Errorf("a key added while HAProxy was stopped: %d after its start, want 503", st)
	}
	if st := h.status(t, key); st != 401 {
		t.Errorf("the revoked key after a restart: %d, want 401", st)
	}
}

// mapIndex is the Runtime API ID of map name (without its #).
func mapIndex(t *testing.T, sock, name string) string {
	ids, err := (Runtime{Socket: sock}).mapIDs("", []string{name})
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(ids[name], "#")
}

// The binary builds and prints its usage.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "inferd-keys")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, _ := exec.Command(bin, "-h").CombinedOutput()
	if !strings.Contains(string(out), "add TENANT") {
		t.Errorf("-h: %s", out)
	}
}

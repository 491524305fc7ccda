package testbed

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestFreePortsDistinct(t *testing.T) {
	seen := map[int]bool{}
	for range 20 {
		p := FreePort(t, true)
		if seen[p] || p <= 0 {
			t.Fatalf("port %d handed out twice or invalid", p)
		}
		seen[p] = true
	}
}

func TestProcLogAndStop(t *testing.T) {
	p := Start(t, t.TempDir(), "sh", nil, "/bin/sh", "-c", "echo started; trap 'echo bye; exit 0' TERM; while :; do sleep 0.05; done")
	if _, ok := WaitFor(5*time.Second, func() bool { return strings.Contains(p.Tail(5), "started") }); !ok {
		t.Fatalf("no output in %s: %q", p.Log, p.Tail(5))
	}
	p.Stop(syscall.SIGTERM, 5*time.Second)
	if p.Running() {
		t.Fatal("still running after Stop")
	}
	if _, ok := WaitFor(time.Second, func() bool { return strings.Contains(p.Tail(5), "bye") }); !ok {
		t.Errorf("SIGTERM not delivered: log %q", p.Tail(5))
	}
}

func TestToolEnvWins(t *testing.T) {
	t.Setenv("INFERD_TESTBED_PROBE", "/bin/sh")
	if got := Tool(t, "INFERD_TESTBED_PROBE", "", "no-such-program", false); got != "/bin/sh" {
		t.Errorf("Tool = %q", got)
	}
}

func TestRepoRoot(t *testing.T) {
	if _, err := os.Stat(RepoRoot() + "/configs/consul-dev.hcl"); err != nil {
		t.Errorf("RepoRoot %s: %v", RepoRoot(), err)
	}
}

// Package testbed finds and starts the real programs that tests run
// against: a Consul dev agent, HAProxy, Prometheus, grpcurl, inferd
// itself. It is for tests only; scripts/setup.sh installs the programs
// (Consul, Prometheus and grpcurl into $INFERD_CACHE/bin, HAProxy from
// Debian).
//
// A program that cannot be found skips the test with the command that
// installs it, unless $INFERD_REQUIRE_TOOLS is set (make test sets it):
// then it fails, so that CI never passes by skipping.
package testbed

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Versions of the programs scripts/build-tools.sh builds into
// $INFERD_CACHE/bin.
const (
	ConsulVersion     = "1.14.11"
	PrometheusVersion = "2.55.1"
	GrpcurlVersion    = "1.9.4"
)

// CacheDir is $INFERD_CACHE, else ~/.cache/inferd.
func CacheDir() string {
	if d := os.Getenv("INFERD_CACHE"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "inferd")
}

// Cached returns $INFERD_CACHE/bin/NAME when it is an executable.
func Cached(name string) (string, bool) {
	p := filepath.Join(CacheDir(), "bin", name)
	fi, err := os.Stat(p)
	return p, err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// Tool finds a program: $ENV, then $INFERD_CACHE/bin/CACHED (when cached is
// not empty), then PATH (only when pathOK). Without it the test is skipped,
// or fails under $INFERD_REQUIRE_TOOLS.
func Tool(t testing.TB, env, cached, name string, pathOK bool) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	if cached != "" {
		if p, ok := Cached(cached); ok {
			return p
		}
	}
	if pathOK {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	where := filepath.Join(CacheDir(), "bin", cached)
	if pathOK {
		where += " or PATH"
	}
	Missing(t, "%s not found ($%s, %s): run make setup", name, env, where)
	return ""
}

// Missing skips the test for want of something make setup installs, or
// fails it when $INFERD_REQUIRE_TOOLS is set.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("INFERD_REQUIRE_TOOLS") != "" {
		t.Fatalf(format+" (required: $INFERD_REQUIRE_TOOLS is set)", args...)
	}
	t.Skipf(format, args...)
}

// ConsulBin finds the consul binary ($INFERD_CONSUL, the cache, PATH).
func ConsulBin(t testing.TB) string {
	t.Helper()
	return Tool(t, "INFERD_CONSUL", "consul-"+ConsulVersion, "consul", true)
}

// GrpcurlBin finds the grpcurl binary ($INFERD_GRPCURL, the cache, PATH).
func GrpcurlBin(t testing.TB) string {
	t.Helper()
	return Tool(t, "INFERD_GRPCURL", "grpcurl-"+GrpcurlVersion, "grpcurl", true)
}

var ports = struct {
	sync.Mutex
	used map[int]bool
}{used: map[int]bool{}}

// FreePort returns a loopback port free for TCP at the time it is chosen,
// and for UDP too when udp is set (DNS). No port is handed out twice in a
// test binary.
func FreePort(t testing.TB, udp bool) int {
	t.Helper()
	ports.Lock()
	defer ports.Unlock()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if ports.used[port] {
			continue
		}
		if udp {
			pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			if err != nil {
				continue
			}
			pc.Close()
		}
		ports.used[port] = true
		return port
	}
	t.Fatal("no free port found")
	return 0
}

// Proc is a program a test started; its output goes to a log file.
type Proc struct {
	Name string
	Log  string // path of the output log
	cmd  *exec.Cmd
	done chan struct{}
}

// Start runs bin with args in dir, env added to the test's environment,
// output appended to dir/NAME.log. At cleanup it gets SIGTERM (SIGKILL 10s
// later); cleanups run last-in first-out, so what started last stops first.
func Start(t testing.TB, dir, name string, env []string, bin string, args ...string) *Proc {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &Proc{Name: name, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() { p.Stop(syscall.SIGTERM, 10*time.Second) })
	return p
}

// Running reports whether the process has not exited.
func (p *Proc) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Pid is the process's ID, for what /proc says of it.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the process (SIGKILL plays a crash).
func (p *Proc) Signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }

// ExitCode is the exit status once the process has exited (-1 when a
// signal ended it), else -1.
func (p *Proc) ExitCode() int {
	if p.Running() {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// Wait waits for the process to exit.
func (p *Proc) Wait() { <-p.done }

// Stop sends sig and waits up to d for the exit, then kills.
func (p *Proc) Stop(sig syscall.Signal, d time.Duration) {
	if !p.Running() {
		return
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(d):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// Tail returns the last n lines of the process's log.
func (p *Proc) Tail(n int) string {
	b, _ := os.ReadFile(p.Log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// WaitFor polls cond every 20ms until it holds or d passes; it returns how
// long that took and whether cond held.
func WaitFor(d time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for {
		if cond() {
			return time.Since(start), true
		}
		if time.Since(start) > d {
			return time.Since(start), false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/inferd/inferd/internal/testbed"
)

// build compiles inferd into a temporary folder.
func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "inferd")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// buildServing is build for the tests that run the server: they need ONNX
// Runtime and are skipped under -short.
func buildServing(t *testing.T) string {
	t.Helper()
	testbed.NeedORT(t)
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped under -short")
	}
	return build(t)
}

func TestCheckConfig(t *testing.T) {
	bin := build(t)
	out, err := exec.Command(bin, "-check-config", "-config", "../../configs/inferd.yaml").CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("config ok")) {
		t.Errorf("shipped config: %v %s", err, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("models:\n  - name: m\n    devise: cpu\n"), 0o644)
	out, err = exec.Command(bin, "-check-config", "-config", bad).CombinedOutput()
	if err == nil || !bytes.Contains(out, []byte("field devise not found")) {
		t.Errorf("bad config: %v %s", err, out)
	}

	// What used to pass the check and fail at startup: the flags are
	// applied first, and the files the config names are looked at.
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	os.WriteFile(missing, []byte("models:\n  - {name: m, path: /nope.onnx, device: cpu}\n"), 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-device", "GPU0", "-config", "../../configs/inferd.yaml"}, `inferd: -device "GPU0": want auto, cpu or cuda:N`},
		{[]string{"-config", missing}, `inferd: ` + missing + `: config: models[0].path "/nope.onnx": no such file or directory`},
		// Every mistake, one line each, in one run.
		{[]string{"-config", "../../config/testdata/three-mistakes.bad.yml"}, `models[0].device "gpu"`},
		{[]string{"-config", "../../config/testdata/three-mistakes.bad.yml"}, `models[0].buckets [8 4]`},
		{[]string{"-config", "../../config/testdata/three-mistakes.bad.yml"}, `models[1].labels "/nope-synset.txt"`},
	} {
		out, err := exec.Command(bin, append([]string{"-check-config"}, c.args...)...).CombinedOutput()
		if code := exitCode(err); code != 1 || !bytes.Contains(out, []byte(c.want)) || bytes.Contains(out, []byte("config ok")) {
			t.Errorf("-check-config %q: exit %d, want 1 saying %s:\n%s", c.args, code, c.want, out)
		}
	}
	out, _ = exec.Command(bin, "-check-config", "-config", "../../config/testdata/three-mistakes.bad.yml").CombinedOutput()
	if n := bytes.Count(out, []byte("inferd: ")); n != 3 {
		t.Errorf("three mistakes, %d lines:\n%s", n, out)
	}
	// The flags a good config is started with are checked with it.
	out, err = exec.Command(bin, "-check-config", "-config", "../../configs/inferd.yaml", "-device", "cpu", "-listen", "127.0.0.1:0").CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("config ok: 1 model(s), listen 127.0.0.1:0")) {
		t.Errorf("shipped config with -device cpu: %v %s", err, out)
	}

	// Model files are read by ONNX Runtime, loaded once for all of them:
	// a library that does not load is one line, whatever the number of
	// files it would have read (a fresh process: nothing loaded yet).
	dir := t.TempDir()
	notModel := filepath.Join(dir, "not.onnx")
	os.WriteFile(notModel, []byte("this is not an ONNX model, just text\n"), 0o644)
	noLib := filepath.Join(dir, "nolib.yaml")
	os.WriteFile(noLib, fmt.Appendf(nil, "runtime: {library: %q}\nmodels:\n  - {name: a, path: %q, device: cpu}\n  - {name: b, path: %q, device: cpu}\n",
		notModel, notModel, notModel), 0o644)
	out, err = exec.Command(bin, "-check-config", "-config", noLib).CombinedOutput()
	wantLib := "inferd: " + noLib + ": config: onnx runtime library: cannot load " + notModel + " ("
	if code := exitCode(err); code != 1 || bytes.Count(out, []byte("\n")) != 1 || !bytes.HasPrefix(out, []byte(wantLib)) || !bytes.HasSuffix(out, []byte("; model files not read\n")) {
		t.Errorf("-check-config with a library that does not load: exit %d, want 1 and one line %s...; model files not read:\n%s", code, wantLib, out)
	}
	testbed.NeedORT(t) // the binary finds it in $INFERD_ORT_LIB
	notONNX := filepath.Join(dir, "not-onnx.yaml")
	os.WriteFile(notONNX, fmt.Appendf(nil, "models:\n  - {name: a, path: %q, device: cpu}\n", notModel), 0o644)
	out, err = exec.Command(bin, "-check-config", "-config", notONNX).CombinedOutput()
	want := fmt.Sprintf("inferd: %s: config: models[0].path %q: not an ONNX model: onnx runtime says: failed to load model because protobuf parsing failed (37 bytes)\n", notONNX, notModel)
	if code := exitCode(err); code != 1 || string(out) != want {
		t.Errorf("-check-config with a file that is no model: exit %d, want 1 and\n%s\nit said\n%s", code, want, out)
	}
}

// The flags are applied before the check, so that a config is checked as
// it will run; a flag with a bad value is said as the flag, with every
// problem of the file, and is not applied.
func TestLoadAppliesFlagsFirst(t *testing.T) {
	autoBuckets := filepath.Join(t.TempDir(), "auto-buckets.yaml")
	// On auto (cuda first) max_batch defaults to 64: buckets to 8 are wrong
	// there, right on cpu.
	os.WriteFile(autoBuckets, []byte("models:\n  - {name: m, path: builtin:tiny, buckets: [1, 2, 4, 8]}\n"), 0o644)
	const three = "../../config/testdata/three-mistakes.bad.yml"
	for _, c := range []struct {
		name string
		path string
		fl   overrides
		want []string // the error's lines; none: it loads
	}{
		{"-device makes the buckets right", autoBuckets, overrides{device: "cpu"}, nil},
		{"without it they are wrong", autoBuckets, overrides{},
			[]string{autoBuckets + ": config: models[0].buckets [1 2 4 8]: the last must equal max_batch 64"}},
		{"a bad -device and every mistake of the file", three, overrides{device: "GPU0"}, []string{
			`-device "GPU0": want auto, cpu or cuda:N`,
			three + `: config: models[0].device "gpu": want auto, cpu or cuda:N`,
			three + ": config: models[0].buckets [8 4]: must be strictly ascending",
			three + `: config: models[1].labels "/nope-synset.txt": no such file or directory`,
		}},
		// The listen address is the flag's, not the file's, to blame.
		{"a bad -listen", "../../configs/inferd.yaml", overrides{listen: "8000"},
			[]string{`-listen "8000": want HOST:PORT, e.g. :8000`}},
		{"no file, bad flags", "", overrides{listen: "localhost", device: "gpu"}, []string{
			`-listen "localhost": want HOST:PORT, e.g. :8000`,
			`-device "gpu": want auto, cpu or cuda:N`,
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := load(c.path, c.fl)
			if c.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if want := strings.Join(c.want, "\n"); err == nil || err.Error() != want {
				t.Errorf("load said\n%v\nwant\n%s", err, want)
			}
		})
	}
	cfg, err := load("../../configs/inferd.yaml", overrides{listen: "127.0.0.1:0", device: "cpu", consul: "127.0.0.1:8501"})
	if err != nil {
		t.Fatal(err)
	}
	if r := cfg.Register; cfg.Listen != "127.0.0.1:0" || cfg.Models[0].Device != "cpu" || !r.Enabled || r.ConsulAddr != "127.0.0.1:8501" {
		t.Errorf("flags not applied: listen %q, device %q, register %+v", cfg.Listen, cfg.Models[0].Device, r)
	}
}

// exitCode is the exit status exec reports in err: 0 for nil, -1 when the
// process did not run to an exit.
func exitCode(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	return -1
}

// SIGTERM under steady load: every request sent before the signal
// succeeds, the process logs each shutdown step and exits 0.
func TestSIGTERMUnderLoadLosesNothing(t *testing.T) {
	bin := buildServing(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "inferd.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
listen: 127.0.0.1:0
runtime: {model_dir: %q}
server: {drain_delay: 300ms}
models:
  - {name: tiny, path: "builtin:tiny", device: cpu, max_batch: 8, batcher: {max_delay: 2ms}}
`, dir)), 0o644)
	cmd := exec.Command(bin, "-config", cfg)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	// The log says where it listens and when it is ready.
	lines := make(chan string, 100)
	var logged bytes.Buffer
	var logMu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logMu.Lock()
			logged.WriteString(sc.Text() + "\n")
			logMu.Unlock()
			select {
			case lines <- sc.Text():
			default:
			}
		}
		close(lines)
	}()
	addrRe := regexp.MustCompile(`msg=ready addr=(\S+)`)
	var addr string
	deadline := time.After(60 * time.Second)
	for addr == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("inferd exited:\n%s", logged.String())
			}
			if m := addrRe.FindStringSubmatch(l); m != nil {
				addr = m[1]
			}
		case <-deadline:
			t.Fatal("inferd not ready in 60s")
		}
	}

	body, _ := json.Marshal(map[string]any{"inputs": []any{map[string]any{
		"name": "input", "datatype": "FP32", "shape": []int{1, 3, 224, 224}, "data": make([]float32, 3*224*224),
	}}})
	var signalled atomic.Int64 // unix nanos of the signal; 0 before
	var before, beforeFailed, after atomic.Int64
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second}
	stop := make(chan struct{})
	for range 8 {
		wg.Go(func() {
			for n := 0; n < 2000; n++ { // bounded
				select {
				case <-stop:
					return
				default:
				}
				sent := time.Now().UnixNano()
				resp, err := client.Post("http://"+addr+"/v2/models/tiny/infer", "application/json", bytes.NewReader(body))
				ok := err == nil && resp.StatusCode == 200
				if resp != nil {
					resp.Body.Close()
				}
				if s := signalled.Load(); s == 0 || sent < s {
					before.Add(1)
					if !ok {
						beforeFailed.Add(1)
						t.Logf("request sent before the signal failed: %v", err)
					}
				} else {
					after.Add(1)
					if !ok {
						return // the server is going away: stop this client
					}
				}
			}
		})
	}
	// Steady load first: at least 32 requests answered before the signal.
	for wait := time.Now().Add(30 * time.Second); before.Load() < 32; {
		if time.Now().After(wait) {
			t.Fatalf("only %d requests answered in 30s", before.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	signalled.Store(time.Now().UnixNano())
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	close(stop)
	wg.Wait()
	logMu.Lock()
	log := logged.String()
	logMu.Unlock()
	if err != nil {
		t.Errorf("exit: %v, want 0\n%s", err, log)
	}
	t.Logf("%d requests sent before SIGTERM, %d failed; %d sent after", before.Load(), beforeFailed.Load(), after.Load())
	if before.Load() == 0 || beforeFailed.Load() != 0 {
		t.Errorf("%d of %d requests sent before the signal failed", beforeFailed.Load(), before.Load())
	}
	for _, step := range []string{"step=drain", "step=http", "step=\"model tiny\"", "msg=stopped"} {
		if !bytes.Contains([]byte(log), []byte(step)) {
			t.Errorf("log lacks %s:\n%s", step, log)
		}
	}
}

// SIGHUP reloads the models of the config file: a model is added and the
// replica keeps serving; a broken file changes nothing and says why.
func TestSIGHUPReloadsModels(t *testing.T) {
	bin := buildServing(t)
	dir := t.TempDir()
	port := testbed.FreePort(t, false)
	cfg := filepath.Join(dir, "inferd.yaml")
	write := func(models string) {
		t.Helper()
		yaml := fmt.Sprintf("listen: 127.0.0.1:%d\nruntime: {model_dir: %q}\nmodels:\n%s", port, dir, models)
		if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("  - {name: tiny, path: \"builtin:tiny\", device: cpu, max_batch: 4}\n")
	p := testbed.Start(t, dir, "inferd", nil, bin, "-config", cfg)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	status := func(path string) int {
		resp, err := http.Get(base + path)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if _, ok := testbed.WaitFor(60*time.Second, func() bool { return status("/v2/health/ready") == 200 }); !ok {
		t.Fatalf("not ready:\n%s", p.Tail(20))
	}

	write("  - {name: tiny, path: \"builtin:tiny\", device: cpu, max_batch: 4}\n  - {name: tiny2, path: \"builtin:tiny\", device: cpu, max_batch: 2}\n")
	p.Signal(syscall.SIGHUP)
	if _, ok := testbed.WaitFor(30*time.Second, func() bool { return status("/v2/models/tiny2/ready") == 200 }); !ok {
		t.Fatalf("tiny2 not served after SIGHUP:\n%s", p.Tail(20))
	}
	if status("/v2/models/tiny/ready") != 200 || !bytes.Contains([]byte(p.Tail(5)), []byte("msg=reloaded")) {
		t.Errorf("after the reload tiny answers %d; log:\n%s", status("/v2/models/tiny/ready"), p.Tail(5))
	}

	write("  - {name: tiny, devise: cpu}\n")
	p.Signal(syscall.SIGHUP)
	if _, ok := testbed.WaitFor(10*time.Second, func() bool {
		return bytes.Contains([]byte(p.Tail(5)), []byte("reload failed; still serving the previous models"))
	}); !ok {
		t.Errorf("no reload failure logged:\n%s", p.Tail(10))
	}
	if status("/v2/models/tiny2/ready") != 200 || !p.Running() {
		t.Errorf("a broken file changed what is served (running %v):\n%s", p.Running(), p.Tail(10))
	}
	p.Signal(syscall.SIGTERM)
	p.Wait()
	if code := p.ExitCode(); code != 0 {
		t.Errorf("exit %d after SIGTERM:\n%s", code, p.Tail(10))
	}
}

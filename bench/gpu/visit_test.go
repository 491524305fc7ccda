// Package gpuvisit tests the GPU visit of bench/gpu: prepare.sh packs it
// for one transfer, visit.sh runs it on the GPU host; DEVICE=cpu is its dry
// run on a machine without a GPU.
package gpuvisit

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/inferd/inferd/internal/testbed"
)

// The limits of a visit: what one transfer carries (64 MiB, less the
// checkout's own files) and how many files come back.
const (
	packLimit   = 60 << 20
	resultFiles = 8
)

// TestDryRun packs the visit as bench/gpu/README.md says, then runs it with
// DEVICE=cpu: the pack's own ONNX Runtime loads its reduced CUDA provider up
// to the first missing CUDA library, the smoke step passes on the tiny
// model, and the results fit what a visit brings back.
func TestDryRun(t *testing.T) {
	if testing.Short() {
		t.Skip("packs the visit and runs its dry run: about a minute on 2 cores, 4 the first time")
	}
	if testbed.ORTLibrary() == "" {
		t.Skipf("no ONNX Runtime ($%s, .deps/ort): run make setup", testbed.ORTLibEnv)
	}
	root := testbed.RepoRoot()
	stage := filepath.Join(root, "..", "shared", "gpu", "stage-ort-cuda.sh")
	if _, err := os.Stat(stage); err != nil {
		t.Skipf("%s is missing: this checkout has no GPU visit staging beside it", stage)
	}
	for _, tool := range []string{"bash", "python3", "tar", "ldd", "timeout"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found", tool)
		}
	}
	dir := t.TempDir()
	pack, out := filepath.Join(dir, "pack"), filepath.Join(dir, "out")
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()

	start := time.Now()
	prep := script(ctx, t, root, []string{"PACK=" + pack}, "bench/gpu/prepare.sh")
	t.Logf("prepare: %s", time.Since(start).Round(time.Second))
	for _, want := range []string{
		"outside .nv_fatbin (63323576 of 229780440 bytes): identical",
		"sm_90 images: 288 entries",
		"reduced: identical",
		"output identical to the original's",
		"check-provider: ok",
	} {
		if !strings.Contains(prep, want) {
			t.Errorf("prepare's proof lacks %q:\n%s", want, prep)
		}
	}
	var size int64
	entries, err := os.ReadDir(pack)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && !e.IsDir() {
			size += fi.Size()
		}
	}
	if size > packLimit {
		t.Errorf("the pack is %d MiB, over %d", size>>20, packLimit>>20)
	}
	t.Logf("pack: %.1f MiB", float64(size)/(1<<20))

	start = time.Now()
	visit := script(ctx, t, root, []string{"DEVICE=cpu", "PACK=" + pack, "OUT=" + out}, "bench/gpu/visit.sh")
	t.Logf("dry run: %s", time.Since(start).Round(time.Second))

	files, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, f.Name())
	}
	if len(files) > resultFiles || strings.Join(names, " ") != "details.tar.gz summary.md visit.log" {
		t.Errorf("results %v: want details.tar.gz, summary.md and visit.log (at most %d files come back)", names, resultFiles)
	}
	log := read(t, filepath.Join(out, "visit.log"))
	for _, re := range []string{
		`(?m)^smoke: passed in \d+ s$`,
		// The pack's core loads its reduced provider: the error names a
		// CUDA library, not an ELF problem.
		`(?m)^load check: library \S+/libonnxruntime_providers_cuda\.so with error: libcublasLt\.so\.13: cannot open shared object file`,
		`(?m)^skipped: torch: no GPU$`,
		`(?m)^providers tiny on cpu: \d+ node runs in \d+ profile\(s\): CPUExecutionProvider \d+$`,
	} {
		if !regexp.MustCompile(re).MatchString(log) {
			t.Errorf("visit.log does not match %s", re)
		}
	}
	if log != visit {
		t.Errorf("visit.log (%d bytes) is not what the script printed (%d bytes)", len(log), len(visit))
	}
	summary := read(t, filepath.Join(out, "summary.md"))
	for _, re := range []string{
		`(?m)^\| # \| group \| figure \| value \| unit \| note \|$`,
		`(?m)^\| \d+ \| smoke \| result \| passed \|`,
		`(?m)^\| \d+ \| raw ORT cpu \| tiny batch 1 \| [\d.]+ \| images/s \|`,
		`(?m)^\| \d+ \| inferd \| tiny-i1-mb8 infer-binary c=8 \| [\d.]+ \| requests/s \|`,
		`(?m)^\| \d+ \| inferd \| tiny-i1-mb8 classify c=4 \| [\d.]+ \| requests/s \|`,
		`(?m)^\| \d+ \| ratio \| inferd tiny-i1-mb8 c=8 / raw at batch \d+ \| [\d.]+ \| x \|`,
	} {
		if !regexp.MustCompile(re).MatchString(summary) {
			t.Errorf("summary.md does not match %s:\n%s", re, summary)
		}
	}
	// Every table row has the table's six columns.
	for _, line := range strings.Split(summary, "\n") {
		if strings.HasPrefix(line, "| ") && strings.Count(strings.ReplaceAll(line, `\|`, ""), "|") != 7 {
			t.Errorf("row with a broken column count: %s", line)
		}
	}
	members := untar(t, filepath.Join(out, "details.tar.gz"))
	for _, want := range []string{"details/records.jsonl", "details/MANIFEST", "details/smoke-cuda-load.txt",
		"details/inferd-tiny-i1-mb8.log", "details/metrics-tiny-i1-mb8.txt"} {
		if !members[want] {
			t.Errorf("details.tar.gz lacks %s", want)
		}
	}
}

// script runs a bash script from the checkout's root with env added and
// returns what it printed, failing the test when it fails.
func script(ctx context.Context, t *testing.T, root string, env []string, path string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, "bash", append([]string{path}, args...)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 10 * time.Second
	b, err := cmd.CombinedOutput()
	if err != nil {
		tail := string(b)
		if len(tail) > 6000 {
			tail = "..." + tail[len(tail)-6000:]
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Fatalf("%s ran out of time:\n%s", path, tail)
		}
		t.Fatalf("%s: %v:\n%s", path, err, tail)
	}
	return string(b)
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func untar(t *testing.T, path string) map[string]bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	tr := tar.NewReader(zr)
	names := map[string]bool{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		names[strings.TrimSuffix(h.Name, "/")] = true
	}
}

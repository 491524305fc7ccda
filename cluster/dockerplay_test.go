package cluster

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"

	"github.com/inferd/inferd/internal/testbed"
)

// TestDockerfilePlayedHere carries out Dockerfile.cuda on this machine
// without a Docker engine, to show that its stages do what the image
// needs. Each stage gets a directory standing for its filesystem root;
// WORKDIR, ENV, COPY (with .dockerignore) and RUN are carried out there,
// with the absolute paths the file uses moved under that root. The build
// stage's apt-get line is checked against the installed packages instead
// of run. Then the runtime stage's ENTRYPOINT and CMD start as the
// container would, with its ENV and the ONNX Runtime its COPY lines
// brought in, listening on a free port rather than 8000: the replica must
// turn ready, pass the HEALTHCHECK command, classify an image and exit 0 on
// SIGTERM.
//
// What it cannot show: the base images. The stages run on Debian 12 (the
// base of golang:1.26-bookworm and node:22-bookworm-slim), not on
// nvidia/cuda's Ubuntu 24.04, and without CUDA the replica's "auto" device
// falls back to the CPU, as it would in the image on a host without a GPU.
func TestDockerfilePlayedHere(t *testing.T) {
	if testing.Short() {
		t.Skip("builds inferd and serves the generated ResNet50 (skipped under -short)")
	}
	stages := parseDockerfile(t)
	cache := testbed.CacheDir()
	for _, tgz := range []string{"onnxruntime-node-1.29.0.tgz", "com.github.asus4.onnxruntime.linux-x64-gpu-0.4.9.tgz"} {
		if _, err := os.Stat(filepath.Join(cache, tgz)); err != nil {
			testbed.Missing(t, "%s not in %s: run make setup GPU=1", tgz, cache)
		}
	}
	ignore := dockerignore(t)
	dir := t.TempDir()
	roots := map[string]string{}
	var rt *stagePlay
	for i, st := range stages {
		name := st.Name
		if name == "" {
			name = "runtime"
		}
		p := &stagePlay{t: t, root: filepath.Join(dir, name), workdir: "/", ignore: ignore, roots: roots}
		roots[st.Name] = p.root
		if err := os.MkdirAll(p.root, 0o755); err != nil {
			t.Fatal(err)
		}
		if name == "ort" {
			// The tarballs make setup fetched, so that the stage does not
			// download them again; setup.sh still checks their sha256.
			c := filepath.Join(p.root, "tmp", "ort-cache")
			os.MkdirAll(c, 0o755)
			for _, tgz := range []string{"onnxruntime-node-1.29.0.tgz", "com.github.asus4.onnxruntime.linux-x64-gpu-0.4.9.tgz"} {
				if err := os.Symlink(filepath.Join(cache, tgz), filepath.Join(c, tgz)); err != nil {
					t.Fatal(err)
				}
			}
		}
		last := i == len(stages)-1
		for _, c := range st.Commands {
			p.play(c, last)
		}
		if t.Failed() {
			t.FailNow()
		}
		if last {
			rt = p
		}
	}

	// The container: ENTRYPOINT + CMD with the stage's ENV, on a free port.
	if len(rt.entrypoint) == 0 {
		t.Fatal("no ENTRYPOINT in the runtime stage")
	}
	port := testbed.FreePort(t, false)
	args := append(append([]string{}, rt.entrypoint[1:]...), rt.cmd...)
	args = append(args, "-listen", "127.0.0.1:"+strconv.Itoa(port))
	proc := testbed.Start(t, dir, "container", rt.env, rt.entrypoint[0], args...)
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	took, ok := testbed.WaitFor(4*time.Minute, func() bool { return !proc.Running() || httpOK(base+"/v2/health/ready") })
	if !ok || !proc.Running() {
		t.Fatalf("the container's inferd not ready after %s (running %v):\n%s", took, proc.Running(), proc.Tail(30))
	}
	t.Logf("ready %s after start (generating and warming ResNet50 on the CPU):\n%s", took.Round(time.Millisecond), proc.Tail(12))

	// HEALTHCHECK, as Docker would run it, on this port.
	if len(rt.health) == 0 {
		t.Fatal("no HEALTHCHECK CMD in the runtime stage")
	}
	hc := make([]string, len(rt.health))
	for i, a := range rt.health {
		hc[i] = strings.ReplaceAll(a, "127.0.0.1:8000", "127.0.0.1:"+strconv.Itoa(port))
	}
	if out, err := exec.Command(hc[0], hc[1:]...).CombinedOutput(); err != nil {
		t.Errorf("HEALTHCHECK %q: %v\n%s", hc, err, out)
	}

	resp, err := http.Post(base+"/v2/models/resnet50/classify", "image/png", bytes.NewReader(testImage()))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var got struct {
		Model       string
		Predictions []struct {
			Label       string
			Probability float64
		}
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &got) != nil || got.Model != "resnet50" || len(got.Predictions) == 0 ||
		got.Predictions[0].Probability <= 0 {
		t.Errorf("classify through the container: %s %s", resp.Status, body)
	}

	proc.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { proc.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("no exit 60s after SIGTERM:\n%s", proc.Tail(20))
	}
	if code := proc.ExitCode(); code != 0 {
		t.Errorf("exit code %d after SIGTERM:\n%s", code, proc.Tail(20))
	}
}

// parseDockerfile returns Dockerfile.cuda's stages, parsed by BuildKit.
func parseDockerfile(t *testing.T) []instructions.Stage {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot, "Dockerfile.cuda"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	for _, w := range res.Warnings {
		t.Errorf("parser warning: %s", w.Short)
	}
	stages, _, err := instructions.Parse(res.AST, nil)
	if err != nil {
		t.Fatalf("instructions: %v", err)
	}
	return stages
}

// dockerignore reads .dockerignore; only plain patterns are understood
// (no "!" exceptions, no "**"), and the test says so if that changes.
func dockerignore(t *testing.T) []string {
	b, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var pats []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, "!") || strings.Contains(l, "**") {
			t.Fatalf(".dockerignore pattern %q: this test understands plain patterns only", l)
		}
		pats = append(pats, strings.Trim(l, "/"))
	}
	return pats
}

// The absolute paths Dockerfile.cuda may use, moved under the stage's root,
// and those that are left as they are (the host's own); any other is an
// error, so that a change to the file is noticed here.
var (
	movedPaths = []string{"/src", "/out", "/tmp/ort-cache", "/opt/onnxruntime", "/etc/inferd", "/var/lib/inferd", "/usr/local/bin/inferd"}
	hostPaths  = []string{"/usr/local/cuda", "/var/lib/apt/lists", "/dev/null"}
	absPath    = regexp.MustCompile(`(^|[\s=:"'])(/[\w.+-][\w./+-]*)`)
)

// stagePlay carries out one stage under root.
type stagePlay struct {
	t       *testing.T
	root    string
	workdir string
	env     []string
	ignore  []string
	roots   map[string]string // stage name -> root

	entrypoint, cmd, health []string
}

// move rewrites the absolute paths in s to lie under the root.
func (p *stagePlay) move(s string) string {
	return absPath.ReplaceAllStringFunc(s, func(m string) string {
		i := strings.IndexByte(m, '/')
		lead, path := m[:i], m[i:]
		for _, h := range hostPaths {
			if path == h || strings.HasPrefix(path, h+"/") {
				return m
			}
		}
		for _, mv := range movedPaths {
			if path == mv || strings.HasPrefix(path, mv+"/") {
				return lead + filepath.Join(p.root, path) + map[bool]string{true: "/", false: ""}[strings.HasSuffix(path, "/")]
			}
		}
		p.t.Errorf("absolute path %s in %q: add it to movedPaths or hostPaths", path, s)
		return m
	})
}

func (p *stagePlay) abs(path string) string {
	if !filepath.IsAbs(path) {
		path = filepath.Join(p.workdir, path)
	}
	return p.move(path)
}

func (p *stagePlay) play(c instructions.Command, runtime bool) {
	t := p.t
	switch c := c.(type) {
	case *instructions.WorkdirCommand:
		p.workdir = c.Path
		if err := os.MkdirAll(p.abs("."), 0o755); err != nil {
			t.Fatal(err)
		}
	case *instructions.EnvCommand:
		for _, kv := range c.Env {
			p.env = append(p.env, kv.Key+"="+p.move(kv.Value))
		}
	case *instructions.CopyCommand:
		src := repoRoot
		if c.From != "" {
			src = p.roots[c.From]
			if src == "" {
				t.Fatalf("COPY --from=%s: no such stage played", c.From)
			}
		}
		dest := p.abs(c.DestPath)
		if strings.HasSuffix(c.DestPath, "/") || c.DestPath == "." || c.DestPath == "./" {
			dest += "/"
		}
		for _, s := range c.SourcePaths {
			// From the context, s is relative to it; from a stage, s is an
			// absolute path in that stage's root.
			if err := p.copy(filepath.Join(src, s), dest, c.From == "", len(c.SourcePaths) > 1); err != nil {
				t.Errorf("COPY %s %s: %v", s, c.DestPath, err)
			}
		}
	case *instructions.RunCommand:
		line := strings.Join(c.CmdLine, " ")
		if runtime || strings.Contains(line, "apt-get install") {
			p.checkPackages(line, runtime)
			return
		}
		if !c.PrependShell {
			t.Fatalf("RUN %q: exec form not played", line)
		}
		moved := p.move(line)
		cmd := exec.Command("/bin/sh", "-c", moved)
		cmd.Dir = p.abs(".")
		cmd.Env = append(os.Environ(), p.env...)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("RUN %s\n(as %s): %v\n%s", line, moved, err, out)
		}
		t.Logf("RUN %s: %s", line, time.Since(start).Round(time.Millisecond))
	case *instructions.EntrypointCommand:
		p.entrypoint = p.moveAll(c.CmdLine)
	case *instructions.CmdCommand:
		p.cmd = p.moveAll(c.CmdLine)
	case *instructions.HealthCheckCommand:
		if len(c.Health.Test) > 1 && c.Health.Test[0] == "CMD" {
			p.health = c.Health.Test[1:]
		}
	case *instructions.UserCommand, *instructions.ExposeCommand:
		// Not played: the test runs as its own user, on a free port.
	default:
		t.Errorf("instruction %T not played: teach the test", c)
	}
}

func (p *stagePlay) moveAll(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = p.move(a)
	}
	return out
}

// checkPackages stands in for an apt-get line: in a build stage every
// package it installs must be installed here (Debian 12, the stage's
// base); the runtime stage's (Ubuntu 24.04 names, useradd) are only noted.
func (p *stagePlay) checkPackages(line string, runtime bool) {
	if runtime {
		p.t.Logf("RUN not played (runtime stage on Ubuntu): %s", line)
		return
	}
	i := strings.Index(line, "apt-get install")
	rest := line[i+len("apt-get install"):]
	if j := strings.Index(rest, "&&"); j >= 0 {
		rest = rest[:j]
	}
	for _, f := range strings.Fields(rest) {
		if strings.HasPrefix(f, "-") {
			continue
		}
		out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", f).Output()
		if err != nil || !strings.Contains(string(out), "install ok installed") {
			testbed.Missing(p.t, "package %s (from %q) is not installed here: run make setup", f, line)
		}
	}
}

// copy copies from (a file or a directory's contents) to dest, which is a
// directory when it ends in "/" or when several sources are copied.
func (p *stagePlay) copy(from, dest string, context, many bool) error {
	fi, err := os.Stat(from)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		if strings.HasSuffix(dest, "/") || many {
			dest = filepath.Join(dest, filepath.Base(from))
		}
		return copyFile(from, dest, fi.Mode())
	}
	return filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		if context && rel != "." && p.ignored(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dest, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		info, err := os.Stat(path) // follow links, as the build context does
		if err != nil {
			return err
		}
		return copyFile(path, target, info.Mode())
	})
}

func (p *stagePlay) ignored(rel string) bool {
	for _, pat := range p.ignore {
		if ok, _ := filepath.Match(pat, rel); ok {
			return true
		}
	}
	return false
}

func copyFile(from, to string, mode fs.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode.Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", from, err)
	}
	return out.Close()
}

package cluster

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

// Dockerfile.cuda parses with BuildKit's own Dockerfile parser and has the
// stages, user, healthcheck and entrypoint the image needs. There is no
// Docker engine here: building it is left to a machine with one.
func TestDockerfileCUDA(t *testing.T) {
	stages := parseDockerfile(t)
	names := map[string]instructions.Stage{}
	for _, s := range stages {
		names[s.Name] = s
	}
	if len(stages) != 3 || names["build"].BaseName == "" || names["ort"].BaseName == "" {
		t.Fatalf("stages %v: want build, ort and the runtime", stageNames(stages))
	}
	if b := names["build"].BaseName; !strings.HasPrefix(b, "golang:1.26") {
		t.Errorf("build stage FROM %s: want golang:1.26 (go.mod's Go)", b)
	}
	rt := stages[len(stages)-1]
	if !regexp.MustCompile(`^nvidia/cuda:13\.\d+\.\d+-cudnn-runtime-ubuntu24\.04$`).MatchString(rt.BaseName) {
		t.Errorf("runtime FROM %s: want nvidia/cuda:13.x.y-cudnn-runtime-ubuntu24.04 (CUDA 13, cuDNN 9)", rt.BaseName)
	}

	// The ort stage fetches ONNX Runtime with scripts/setup.sh itself, so the
	// pinned packages and their sha256 sums are the ones make setup uses.
	var ortRuns []string
	for _, c := range names["ort"].Commands {
		if r, ok := c.(*instructions.RunCommand); ok {
			ortRuns = append(ortRuns, strings.Join(r.CmdLine, " "))
		}
	}
	if !strings.Contains(strings.Join(ortRuns, "\n"), "GPU=1") || !strings.Contains(strings.Join(ortRuns, "\n"), "scripts/setup.sh") {
		t.Errorf("ort stage runs %q: want GPU=1 scripts/setup.sh", ortRuns)
	}
	setup, _ := os.ReadFile(filepath.Join(repoRoot, "scripts", "setup.sh"))
	for _, pin := range []string{"onnxruntime-node@1.29.0", "sha256sum -c", "npm pack"} {
		if !strings.Contains(string(setup), pin) {
			t.Errorf("scripts/setup.sh no longer has %q", pin)
		}
	}

	var user, health, entry string
	var cmd []string
	from := map[string]bool{}
	for _, c := range rt.Commands {
		switch c := c.(type) {
		case *instructions.UserCommand:
			user = c.User
		case *instructions.HealthCheckCommand:
			health = strings.Join(c.Health.Test, " ")
			if c.Health.Interval <= 0 || c.Health.Timeout <= 0 || c.Health.StartPeriod <= 0 {
				t.Errorf("healthcheck %+v: want interval, timeout and start period", c.Health)
			}
		case *instructions.EntrypointCommand:
			if !c.PrependShell && len(c.CmdLine) > 0 {
				entry = c.CmdLine[0]
			}
		case *instructions.CmdCommand:
			cmd = c.CmdLine
		case *instructions.CopyCommand:
			if c.From != "" {
				from[c.From] = true
			}
			for _, src := range c.SourcePaths {
				if c.From == "" {
					if _, err := os.Stat(filepath.Join(repoRoot, src)); err != nil {
						t.Errorf("COPY %s: %v", src, err)
					}
				}
			}
		}
	}
	if u := strings.SplitN(user, ":", 2)[0]; u == "" || u == "root" || u == "0" {
		t.Errorf("USER %q: want a non-root user", user)
	}
	if !strings.HasPrefix(health, "CMD ") || !strings.Contains(health, "/v2/health/live") {
		t.Errorf("HEALTHCHECK %q: want an exec-form CMD on /v2/health/live", health)
	}
	if filepath.Base(entry) != "inferd" {
		t.Errorf("ENTRYPOINT %q: want the exec form of inferd", entry)
	}
	if !strings.Contains(strings.Join(cmd, " "), "-config /etc/inferd/inferd.yaml") {
		t.Errorf("CMD %q: want the default config", cmd)
	}
	if !from["build"] || !from["ort"] {
		t.Errorf("runtime copies from %v: want build and ort", from)
	}
}

func stageNames(ss []instructions.Stage) []string {
	var n []string
	for _, s := range ss {
		n = append(n, s.Name+"="+s.BaseName)
	}
	return n
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/inferd/inferd/loadtest"
	"github.com/inferd/inferd/loadtest/testserver"
)

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestAttackCLI runs the command make demo runs, with every sink.
func TestAttackCLI(t *testing.T) {
	url := testserver.Start(t)
	dir := t.TempDir()
	results, plot := filepath.Join(dir, "results.bin"), filepath.Join(dir, "plot.html")
	code, stdout, stderr := runCLI("attack", "-url", url, "-model", "tiny", "-endpoint", "infer-binary",
		"-rate", "40", "-duration", "1s", "-format", "json", "-output", results, "-plot", plot)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep loadtest.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v in %q", err, stdout)
	}
	// vegeta's pacer sends fewer than 40 when the host is slow (under
	// -race on two shared cores it has sent 21), never more.
	if rep.Requests < 10 || rep.Requests > 41 || rep.Success != 1 {
		t.Errorf("requests %d success %v, want up to 40, all ok", rep.Requests, rep.Success)
	}
	f, err := os.Open(results)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := vegeta.NewDecoder(f)
	n := 0
	for {
		var r vegeta.Result
		if err := dec.Decode(&r); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != int(rep.Requests) {
		t.Errorf("results file has %d results, report %d", n, rep.Requests)
	}
	if b, err := os.ReadFile(plot); err != nil || !bytes.Contains(b, []byte("<html")) {
		t.Errorf("plot: %v, %.100q", err, b)
	}
	if stderr != "" {
		t.Errorf("stderr not quiet off a terminal: %q", stderr)
	}
}

// TestSweepCLI prints a header and a row per concurrency.
func TestSweepCLI(t *testing.T) {
	url := testserver.Start(t)
	code, stdout, stderr := runCLI("sweep", "-url", url, "-model", "tiny", "-endpoint", "infer-binary",
		"-concurrencies", "1,2", "-duration", "300ms", "-format", "csv")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "mode,") || !strings.HasPrefix(lines[2], "closed concurrency 2,") {
		t.Errorf("csv:\n%s", stdout)
	}
}

// TestBadInputCLI: each mistake exits non-zero within seconds, saying why.
func TestBadInputCLI(t *testing.T) {
	url := testserver.Start(t)
	tensor := filepath.Join(t.TempDir(), "short.bin")
	if err := os.WriteFile(tensor, make([]byte, 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no command", nil, exitUsage, "usage: loadtest"},
		{"unknown command", []string{"blast"}, exitUsage, `unknown command "blast"`},
		{"unknown flag", []string{"attack", "-rat", "5"}, exitUsage, "flag provided but not defined: -rat"},
		{"bad value", []string{"attack", "-rate", "lots"}, exitUsage, `invalid value "lots"`},
		{"positional", []string{"attack", "-rate", "5", "extra"}, exitUsage, "unexpected arguments"},
		{"no load", []string{"attack", "-url", url}, exitUsage, "needs -rate"},
		{"bad format", []string{"attack", "-rate", "5", "-format", "xml"}, exitUsage, `-format "xml"`},
		{"sweep both", []string{"sweep", "-rates", "1", "-concurrencies", "1"}, exitUsage, "exactly one of"},
		{"sweep bad list", []string{"sweep", "-rates", "1,x"}, exitUsage, `"x" is not a positive number`},
		{"slo no target", []string{"slo"}, exitUsage, "slo needs -p99"},
		{"unreachable", []string{"attack", "-url", testserver.ClosedURL(t), "-model", "tiny", "-rate", "5"}, exitError, "unreachable"},
		{"unknown model", []string{"attack", "-url", url, "-model", "resnet9000", "-rate", "5"}, exitError, `model "resnet9000" not found`},
		{"tensor size", []string{"attack", "-url", url, "-model", "tiny", "-endpoint", "infer-binary", "-tensor", tensor, "-rate", "5"},
			exitError, "1000 bytes, want 602112"},
		{"both loads", []string{"attack", "-url", url, "-model", "tiny", "-rate", "5", "-concurrency", "2"}, exitError, "both a rate and a concurrency"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			code, _, stderr := runCLI(tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, stderr, tt.code, tt.want)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %s", d)
			}
		})
	}
}

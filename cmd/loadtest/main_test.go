package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
	"github.com/tsenart/vegeta/v12/lib/plot"

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

// TestSweepCLI prints a header and a row per concurrency, and writes a
// results file that vegeta's report, plot and encode read whole: they run
// here as vegeta's CLI runs them (vegeta.DecoderFor on the file, then the
// library's metrics, text reporter, plot and JSON encoder), and every
// result of every point must come through.
func TestSweepCLI(t *testing.T) {
	url := testserver.Start(t)
	results := filepath.Join(t.TempDir(), "sweep.bin")
	code, stdout, stderr := runCLI("sweep", "-url", url, "-model", "tiny", "-endpoint", "infer-binary",
		"-concurrencies", "1,2", "-duration", "300ms", "-format", "csv", "-output", results)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	rows, err := csv.NewReader(strings.NewReader(stdout)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || rows[0][0] != "mode" || rows[2][0] != "closed concurrency 2" {
		t.Fatalf("csv:\n%s", stdout)
	}
	want := map[string]int{} // results per point, as its row says
	total := 0
	for _, row := range rows[1:] {
		n, err := strconv.Atoi(row[slices.Index(loadtest.CSVHeader, "requests")])
		if err != nil || n == 0 {
			t.Fatalf("row %q: requests %v", row, err)
		}
		want[row[0]] = n
		total += n
	}

	f, err := os.Open(results)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := vegeta.DecoderFor(f) // how vegeta report, plot and encode open a file
	if dec == nil {
		t.Fatal("vegeta cannot tell the results file's encoding")
	}
	var (
		metrics vegeta.Metrics
		html    bytes.Buffer
		jsonl   bytes.Buffer
		plt     = plot.New(plot.Title("sweep"), plot.Label(plot.ErrorLabeler))
		enc     = vegeta.NewJSONEncoder(&jsonl)
		got     = map[string]int{}
	)
	for n := 0; ; n++ {
		var r vegeta.Result
		if err := dec.Decode(&r); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("vegeta decoding result %d: %v", n, err)
		}
		got[r.Attack]++
		metrics.Add(&r)
		if err := plt.Add(&r); err != nil {
			t.Fatal(err)
		}
		if err := enc.Encode(&r); err != nil {
			t.Fatal(err)
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("results per attack in the file %v, the rows say %v", got, want)
	}
	metrics.Close()
	var text bytes.Buffer
	if err := vegeta.NewTextReporter(&metrics).Report(&text); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`Requests\s+\[total, rate, throughput\]\s+` + strconv.Itoa(total) + `,`).Match(text.Bytes()) {
		t.Errorf("vegeta report of the file, want %d requests:\n%s", total, text.String())
	}
	plt.Close()
	if _, err := plt.WriteTo(&html); err != nil {
		t.Fatal(err)
	}
	for mode := range want {
		if !strings.Contains(html.String(), mode+": OK") {
			t.Errorf("vegeta plot of the file has no series %q", mode+": OK")
		}
	}
	if n := strings.Count(jsonl.String(), "\n"); n != total {
		t.Errorf("vegeta encode of the file wrote %d results, want %d", n, total)
	}
}

// TestRecognizeCLI: without -model, -endpoint recognize loads the server's
// first model and reads that model's server view (it used to read
// resnet50's, the -model default, and see no requests); a -model that is
// not the first fails before any load.
func TestRecognizeCLI(t *testing.T) {
	url := testserver.StartModels(t, "first", "second")
	code, stdout, stderr := runCLI("attack", "-url", url, "-endpoint", "recognize", "-concurrency", "2",
		"-duration", "300ms", "-format", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep loadtest.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v in %q", err, stdout)
	}
	if rep.Requests == 0 || rep.Success != 1 || rep.Server == nil || rep.Server.Requests != float64(rep.Requests) ||
		!strings.HasSuffix(rep.Target, "(model first)") {
		t.Errorf("target %q: %d requests, success %v, server view %+v (%s)", rep.Target, rep.Requests, rep.Success, rep.Server, rep.ServerError)
	}
	code, _, stderr = runCLI("attack", "-url", url, "-endpoint", "recognize", "-model", "second", "-rate", "5")
	if code != exitError || !strings.Contains(stderr, `its first model "first", not "second"`) {
		t.Errorf("exit %d, stderr %q", code, stderr)
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
		{"header without colon", []string{"attack", "-header", "NoColon", "-rate", "5"}, exitUsage, `invalid value "NoColon" for flag -header: want 'Name: value'`},
		{"header without name", []string{"sweep", "-header", ": v"}, exitUsage, "want 'Name: value'"},
		{"missing ca file", []string{"attack", "-url", url, "-model", "tiny", "-rate", "5", "-cacert", "/nonexistent.pem"}, exitError, "ca certificates"},
		{"unreachable", []string{"attack", "-url", testserver.ClosedURL(t), "-model", "tiny", "-rate", "5"}, exitError, "unreachable"},
		{"unknown model", []string{"attack", "-url", url, "-model", "resnet9000", "-rate", "5"}, exitError, `model "resnet9000" not found`},
		{"tensor size", []string{"attack", "-url", url, "-model", "tiny", "-endpoint", "infer-binary", "-tensor", tensor, "-rate", "5"},
			exitError, "1000 bytes, want 602112"},
		{"both loads", []string{"attack", "-url", url, "-model", "tiny", "-rate", "5", "-concurrency", "2"}, exitError, "both a rate and a concurrency"},
		{"recognize another model", []string{"attack", "-url", url, "-endpoint", "recognize", "-model", "resnet50", "-rate", "5"},
			exitError, `answered by its first model "tiny", not "resnet50"`},
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

// TestGatewayCLI: -header and -cacert drive an https front that wants an
// API key; without -cacert the error says to give it.
func TestGatewayCLI(t *testing.T) {
	gw := testserver.StartGateway(t, testserver.Start(t), "k1")
	for _, cmd := range [][]string{
		{"attack", "-concurrency", "2", "-duration", "300ms"},
		{"sweep", "-concurrencies", "1,2", "-duration", "200ms"},
	} {
		args := append(cmd, "-url", gw.URL, "-model", "tiny", "-endpoint", "infer-json", "-format", "json",
			"-header", "Authorization: Bearer k1", "-header", "X-Extra: 1", "-cacert", gw.CAFile)
		code, stdout, stderr := runCLI(args...)
		if code != exitOK {
			t.Fatalf("%s: exit %d: %s", cmd[0], code, stderr)
		}
		if strings.Contains(stdout, `"server_error"`) || !strings.Contains(stdout, `"success":1`) {
			t.Errorf("%s: %s", cmd[0], stdout)
		}
	}
	if n := gw.Refused.Load(); n != 0 || gw.Probes.Load() == 0 || gw.Load.Load() == 0 {
		t.Errorf("refused %d, keyed probes %d, keyed load %d: want every request keyed", n, gw.Probes.Load(), gw.Load.Load())
	}
	code, _, stderr := runCLI("slo", "-p99", "1s", "-url", gw.URL, "-model", "tiny", "-header", "Authorization: Bearer k1")
	if code != exitError || !strings.Contains(stderr, "-cacert") {
		t.Errorf("without -cacert: exit %d, stderr %q; want exit 1 naming -cacert", code, stderr)
	}
}

package main

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/inferd/inferd/loadtest"
	"github.com/inferd/inferd/loadtest/testserver"
)

// TestGRPCSweepCLI: -protocol grpc drives the same sweep over gRPC, with
// the infer-binary load without -endpoint: a row per concurrency, the
// server view from -url, every call in the results file under its
// point's name with the gRPC method as its URL.
func TestGRPCSweepCLI(t *testing.T) {
	gs := testserver.StartGRPC(t, testserver.GRPCOptions{})
	url, addr := gs.URL, gs.Addr
	results := filepath.Join(t.TempDir(), "grpc.bin")
	code, stdout, stderr := runCLI("sweep", "-protocol", "grpc", "-url", url, "-grpc-addr", addr, "-model", "tiny",
		"-concurrencies", "1,2", "-duration", "300ms", "-format", "csv", "-output", results, "-grpc-conns", "2")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	rows, err := csv.NewReader(strings.NewReader(stdout)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || rows[1][0] != "closed concurrency 1" || rows[2][0] != "closed concurrency 2" {
		t.Fatalf("csv:\n%s", stdout)
	}
	f, err := os.Open(results)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := vegeta.DecoderFor(f)
	n := 0
	for ; ; n++ {
		var r vegeta.Result
		if err := dec.Decode(&r); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if r.Code != 200 || !strings.HasPrefix(r.URL, "grpc://"+addr+"/") || !strings.HasPrefix(r.Attack, "closed concurrency ") {
			t.Fatalf("result %d: code %d url %s attack %q", n, r.Code, r.URL, r.Attack)
		}
	}
	if n == 0 {
		t.Error("no results in the file")
	}
}

// TestGRPCAttackCLI: -header goes as gRPC metadata (the server's API key),
// the report names the gRPC target, and its server view counts the calls.
func TestGRPCAttackCLI(t *testing.T) {
	gs := testserver.StartGRPC(t, testserver.GRPCOptions{Key: "k1"})
	url, addr := gs.URL, gs.Addr
	code, stdout, stderr := runCLI("attack", "-protocol", "grpc", "-url", url, "-grpc-addr", addr, "-model", "tiny",
		"-concurrency", "2", "-duration", "300ms", "-format", "json", "-header", "Authorization: Bearer k1")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep loadtest.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v in %q", err, stdout)
	}
	if rep.Requests == 0 || rep.Success != 1 || !strings.HasPrefix(rep.Target, "grpc://"+addr) ||
		rep.Server == nil || rep.Server.Requests != float64(rep.Requests) {
		t.Errorf("target %q: %d requests, success %v, server view %+v (%s)", rep.Target, rep.Requests, rep.Success, rep.Server, rep.ServerError)
	}
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-concurrency", "1"}, exitError, "Unauthenticated"}, // no key
		{[]string{"-concurrency", "1", "-endpoint", "classify"}, exitError, "protocol grpc sends raw tensors (the infer-binary endpoint), not classify"},
		{[]string{"-concurrency", "1", "-protocol", "h3"}, exitError, `protocol "h3": want http or grpc`},
	} {
		args := append([]string{"attack", "-protocol", "grpc", "-url", url, "-grpc-addr", addr, "-model", "tiny"}, tt.args...)
		if code, _, stderr := runCLI(args...); code != tt.code || !strings.Contains(stderr, tt.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", tt.args, code, stderr, tt.code, tt.want)
		}
	}
}

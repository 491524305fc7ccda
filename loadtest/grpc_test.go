package loadtest

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
	"google.golang.org/protobuf/proto"

	"github.com/inferd/inferd/inferencepb"
	"github.com/inferd/inferd/loadtest/testserver"
)

// decodeAll reads every vegeta result of raw.
func decodeAll(t *testing.T, raw io.Reader) []vegeta.Result {
	t.Helper()
	var out []vegeta.Result
	dec := vegeta.NewDecoder(raw)
	for {
		var r vegeta.Result
		err := dec.Decode(&r)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("decoding result %d: %v", len(out), err)
		}
		out = append(out, r)
	}
}

// TestGRPCClosedLoop: a closed loop over gRPC is answered in full, its
// results are vegeta's (decoded by vegeta's decoder, URL the gRPC method,
// bytes the messages' sizes), and the server view, read over HTTP, counts
// exactly the calls made.
func TestGRPCClosedLoop(t *testing.T) {
	gs := testserver.StartGRPC(t, testserver.GRPCOptions{})
	url, addr := gs.URL, gs.Addr
	var raw bytes.Buffer
	cfg := Config{URL: url, Protocol: ProtocolGRPC, GRPCAddr: addr, Model: "tiny", Concurrency: 4,
		Duration: time.Second, Output: &raw}
	rep, err := cfg.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests == 0 || rep.Success != 1 || rep.StatusCodes["200"] != int(rep.Requests) {
		t.Fatalf("%d requests, success %v, codes %v, errors %v", rep.Requests, rep.Success, rep.StatusCodes, rep.Errors)
	}
	if want := "grpc://" + addr + " tiny infer-binary"; rep.Target != want || rep.Mode != "closed concurrency 4" {
		t.Errorf("target %q mode %q, want %q closed concurrency 4", rep.Target, rep.Mode, want)
	}
	if rep.Server == nil || rep.Server.Requests != float64(rep.Requests) {
		t.Errorf("server view %+v (%s): want %d requests", rep.Server, rep.ServerError, rep.Requests)
	}
	results := decodeAll(t, &raw)
	if len(results) != int(rep.Requests) {
		t.Fatalf("%d results, report says %d", len(results), rep.Requests)
	}
	// One row of [3,224,224] FP32 and its framing; the answer holds tiny's
	// output, a few bytes.
	seqs := make([]bool, len(results))
	for i, r := range results {
		if r.Code != 200 || r.Error != "" || r.URL != "grpc://"+addr+"/inference.GRPCInferenceService/ModelInfer" ||
			r.BytesOut < 3*224*224*4 || r.BytesOut > 3*224*224*4+200 || r.BytesIn == 0 || r.Seq >= uint64(len(seqs)) || seqs[r.Seq] {
			t.Fatalf("result %d: %+v", i, r)
		}
		seqs[r.Seq] = true // each sequence number once, as vegeta numbers them
	}
}

// TestGRPCOpenLoop: an open loop over gRPC keeps vegeta's pacing: never
// more than the rate asked for.
func TestGRPCOpenLoop(t *testing.T) {
	gs := testserver.StartGRPC(t, testserver.GRPCOptions{})
	url, addr := gs.URL, gs.Addr
	cfg := Config{URL: url, Protocol: ProtocolGRPC, GRPCAddr: addr, Model: "tiny", Rate: 40,
		Duration: time.Second, NoServerMetrics: true, GRPCConns: 2}
	rep, err := cfg.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests < 10 || rep.Requests > 41 || rep.Success != 1 || rep.TargetRate != 40 {
		t.Errorf("%d requests at %g/s, success %v, errors %v; want up to 40, all ok", rep.Requests, rep.TargetRate, rep.Success, rep.Errors)
	}
}

// TestGRPCSweep: a sweep over gRPC writes one gob stream with every
// point's results under its own attack name, as over HTTP.
func TestGRPCSweep(t *testing.T) {
	gs := testserver.StartGRPC(t, testserver.GRPCOptions{})
	url, addr := gs.URL, gs.Addr
	var raw bytes.Buffer
	cfg := Config{URL: url, Protocol: ProtocolGRPC, GRPCAddr: addr, Model: "tiny", Duration: 300 * time.Millisecond, Output: &raw}
	perMode := map[string]int{}
	err := Sweep(context.Background(), cfg, []float64{1, 3}, true, func(r *Report) error {
		perMode[r.Mode] = int(r.Requests)
		if r.Success != 1 {
			t.Errorf("%s: success %v, errors %v", r.Mode, r.Success, r.Errors)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, r := range decodeAll(t, &raw) {
		got[r.Attack]++
	}
	if len(got) != 2 || got["closed concurrency 1"] != perMode["closed concurrency 1"] || got["closed concurrency 3"] != perMode["closed concurrency 3"] {
		t.Errorf("results per attack %v, reports %v", got, perMode)
	}
}

// TestGRPCHeadersAsMetadata: Headers reach the server as gRPC metadata:
// with the API key the load runs; without it the metadata call is refused
// before any load, saying so.
func TestGRPCHeadersAsMetadata(t *testing.T) {
	gs := testserver.StartGRPC(t, testserver.GRPCOptions{Key: "k1"})
	url, addr := gs.URL, gs.Addr
	cfg := Config{URL: url, Protocol: ProtocolGRPC, GRPCAddr: addr, Model: "tiny", Concurrency: 2,
		Duration: 300 * time.Millisecond, Headers: http.Header{"Authorization": {"Bearer k1"}, "X-Extra": {"1"}}}
	rep, err := cfg.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests == 0 || rep.Success != 1 {
		t.Errorf("%d requests, success %v, errors %v", rep.Requests, rep.Success, rep.Errors)
	}
	noKey := cfg
	noKey.Headers = nil
	if _, err := noKey.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "Unauthenticated") {
		t.Errorf("without the key: %v, want Unauthenticated", err)
	}
}

// TestGRPCResultCodes: a failed call is a result with the HTTP status of
// its gRPC code and the code in its error; a call past the client's own
// timeout is code 0, as vegeta counts an HTTP timeout.
func TestGRPCResultCodes(t *testing.T) {
	gs := testserver.StartGRPC(t, testserver.GRPCOptions{})
	url, addr := gs.URL, gs.Addr
	p, err := prepare(context.Background(), Config{URL: url, Protocol: ProtocolGRPC, GRPCAddr: addr, Model: "tiny", Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.finish()
	atk := &grpcAttack{name: "t", began: time.Now()}
	if r := p.grpc.hit(atk, 30*time.Second); r.Code != 200 || r.Error != "" || r.Seq != 0 {
		t.Errorf("ok call: %+v", r)
	}
	if r := p.grpc.hit(atk, time.Microsecond); r.Code != 0 || !strings.HasPrefix(r.Error, "DeadlineExceeded: ") || r.Seq != 1 {
		t.Errorf("call past its timeout: code %d error %q", r.Code, r.Error)
	}
	// The same request for a model the server does not have.
	var req inferencepb.ModelInferRequest
	if err := proto.Unmarshal(p.grpc.req, &req); err != nil {
		t.Fatal(err)
	}
	req.ModelName = "nope"
	if p.grpc.req, err = proto.Marshal(&req); err != nil {
		t.Fatal(err)
	}
	if r := p.grpc.hit(atk, 30*time.Second); r.Code != 404 || !strings.HasPrefix(r.Error, "NotFound: ") {
		t.Errorf("unknown model: code %d error %q", r.Code, r.Error)
	}

}

// TestGRPCBadConfig: each mistake fails before any load, saying why.
func TestGRPCBadConfig(t *testing.T) {
	gs := testserver.StartGRPC(t, testserver.GRPCOptions{})
	url, addr := gs.URL, gs.Addr
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"unknown protocol", Config{Protocol: "quic", Concurrency: 1}, `protocol "quic": want http or grpc`},
		{"grpc classify", Config{Protocol: ProtocolGRPC, Endpoint: Classify, Concurrency: 1}, "protocol grpc sends raw tensors (the infer-binary endpoint), not classify"},
		{"address without port", Config{Protocol: ProtocolGRPC, GRPCAddr: "127.0.0.1", Concurrency: 1}, `grpc address "127.0.0.1": want host:port`},
		{"unknown model", Config{Protocol: ProtocolGRPC, GRPCAddr: addr, Model: "resnet9000", Concurrency: 1}, `model "resnet9000" not found on grpc ` + addr},
		{"nothing listening", Config{Protocol: ProtocolGRPC, GRPCAddr: strings.TrimPrefix(testserver.ClosedURL(t), "http://"), Concurrency: 1}, "unreachable"},
		{"tensor size", Config{Protocol: ProtocolGRPC, GRPCAddr: addr, Tensor: "/dev/null", Concurrency: 1}, "0 bytes, want 602112"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.URL = url
			tt.cfg.Model = cmp.Or(tt.cfg.Model, "tiny")
			start := time.Now()
			_, err := tt.cfg.Run(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want %q", err, tt.want)
			}
			if d := time.Since(start); d > 6*time.Second {
				t.Errorf("took %s", d)
			}
		})
	}
}

// TestGRPCTLS: against an https URL the calls use TLS, trusting CACert's
// CA (the server view too, over https); without it the error says to
// give it.
func TestGRPCTLS(t *testing.T) {
	gs := testserver.StartGRPC(t, testserver.GRPCOptions{TLS: true})
	cfg := Config{URL: gs.URL, Protocol: ProtocolGRPC, GRPCAddr: gs.Addr, Model: "tiny", Concurrency: 2,
		Duration: 300 * time.Millisecond, CACert: gs.CAFile}
	rep, err := cfg.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests == 0 || rep.Success != 1 || rep.Server == nil || rep.Server.Requests != float64(rep.Requests) {
		t.Errorf("%d requests, success %v, errors %v, server view %+v (%s)", rep.Requests, rep.Success, rep.Errors, rep.Server, rep.ServerError)
	}
	noCA := cfg
	noCA.CACert = ""
	if _, err := noCA.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "certificate not trusted") ||
		!strings.Contains(err.Error(), "-cacert") {
		t.Errorf("without the CA: %v, want an untrusted certificate naming -cacert", err)
	}
}

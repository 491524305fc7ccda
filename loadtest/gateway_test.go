package loadtest

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/inferd/inferd/loadtest/testserver"
)

// TestGateway: through an https front that wants an API key, the key
// header reaches it on the load and on every probe, and -cacert's CA is
// what makes its certificate trusted.
func TestGateway(t *testing.T) {
	gw := testserver.StartGateway(t, testserver.Start(t), "k1")
	cfg := Config{URL: gw.URL, Model: "tiny", Endpoint: InferBinary, Concurrency: 2, Duration: 300 * time.Millisecond,
		Headers: http.Header{"authorization": {"Bearer k1"}}, CACert: gw.CAFile}
	rep, err := cfg.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests == 0 || rep.Success != 1 {
		t.Errorf("%d requests, success %v, errors %v", rep.Requests, rep.Success, rep.Errors)
	}
	if rep.Server == nil || rep.Server.Requests != float64(rep.Requests) {
		t.Errorf("server view %+v (%s): want %d requests", rep.Server, rep.ServerError, rep.Requests)
	}
	// metadata, then /metrics before and after.
	if n := gw.Probes.Load(); n < 3 {
		t.Errorf("%d keyed probes, want metadata and two scrapes", n)
	}
	if n, want := gw.Load.Load(), int64(rep.Requests); n != want {
		t.Errorf("%d keyed load requests, want %d", n, want)
	}
	if n := gw.Refused.Load(); n != 0 {
		t.Errorf("%d requests without the key", n)
	}

	noCA := cfg
	noCA.CACert = ""
	if _, err := noCA.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "-cacert") ||
		!strings.Contains(err.Error(), "certificate") {
		t.Errorf("without the CA: %v, want an untrusted certificate naming -cacert", err)
	}
	noKey := cfg
	noKey.Headers = nil
	if _, err := noKey.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("without the key: %v, want 401", err)
	}
	badCA := cfg
	badCA.CACert = cfg.URL // not a file
	if _, err := badCA.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "ca certificates") {
		t.Errorf("unreadable CA file: %v", err)
	}
}

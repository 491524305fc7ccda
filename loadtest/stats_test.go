package loadtest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/inferd/inferd/kserve"
	"github.com/inferd/inferd/loadtest/testserver"
)

func TestStatsView(t *testing.T) {
	var before, after kserve.ModelStatistics
	before.InferenceCount, before.ExecutionCount = 10, 4
	before.InferenceStats.Success = kserve.StatDuration{Count: 10, Ns: 1e9}
	before.InferenceStats.Queue = kserve.StatDuration{Count: 10, Ns: 5e6}
	before.InferenceStats.ComputeInfer = kserve.StatDuration{Count: 10, Ns: 2e7}
	after = before
	after.InferenceCount, after.ExecutionCount = 40, 8 // 30 rows in 4 batches
	after.InferenceStats.Success = kserve.StatDuration{Count: 30, Ns: 3e9}
	after.InferenceStats.Fail = kserve.StatDuration{Count: 2, Ns: 1e6}
	after.InferenceStats.Queue = kserve.StatDuration{Count: 30, Ns: 5e6 + 20*3e6}
	after.InferenceStats.ComputeInfer = kserve.StatDuration{Count: 30, Ns: 2e7 + 20*8e6}
	v := statsView(&before, &after)
	if v.Source != SourceStatistics || v.Requests != 22 || v.Batches != 4 || v.MeanBatch != 7.5 ||
		v.QueueMean != 3*time.Millisecond || v.ComputeMean != 8*time.Millisecond || v.Rejected["failed"] != 2 {
		t.Errorf("view %+v", v)
	}
}

// A server whose /metrics is elsewhere (Triton serves it on another port)
// still gets a server view, from the statistics extension. The target is
// the real inferd behind a proxy that answers 404 for /metrics.
func TestServerViewFromStatistics(t *testing.T) {
	target, err := url.Parse(testserver.Start(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" {
			http.NotFound(w, r)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()
	rep, err := Config{URL: front.URL, Model: "tiny", Endpoint: InferBinary, Concurrency: 4, Duration: time.Second}.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s := rep.Server
	if s == nil {
		t.Fatalf("no server view: %s", rep.ServerError)
	}
	if s.Source != SourceStatistics || s.Requests != float64(rep.Requests) || s.Batches < 1 ||
		s.MeanBatch < 1 || s.ComputeMean <= 0 || s.QueueP99 != 0 {
		t.Errorf("view %+v for %d requests", s, rep.Requests)
	}
	// Neither metrics nor statistics: the error says both.
	if _, err := snapshot(context.Background(), newProber(front.URL, nil, nil), "nope"); err == nil ||
		!strings.Contains(err.Error(), "server metrics") || !strings.Contains(err.Error(), "model statistics") {
		t.Errorf("snapshot of a model with neither: %v", err)
	}
}

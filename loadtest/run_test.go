package loadtest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/inferd/inferd/loadtest/testserver"
)

// TestAttackFixedRate: two seconds at 50/s is 100 requests, all answered,
// and the raw results decode with vegeta's own decoder.
func TestAttackFixedRate(t *testing.T) {
	url := testserver.Start(t)
	var raw, html bytes.Buffer
	cfg := Config{URL: url, Model: "tiny", Endpoint: InferBinary, Rate: 50, Duration: 2 * time.Second,
		Output: &raw, Plot: &html}
	rep, err := cfg.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// vegeta's pacer never sends more, and fewer when the host is slow:
	// on two shared cores at load 9 it has sent 97, and under -race 45.
	if rep.Requests < 20 || rep.Requests > 101 {
		t.Errorf("requests = %d, want 100 (50/s for 2s)", rep.Requests)
	}
	if rep.Success != 1 || rep.StatusCodes["200"] != int(rep.Requests) {
		t.Errorf("success = %v, codes %v, errors %v; want all 200", rep.Success, rep.StatusCodes, rep.Errors)
	}
	if rep.Server == nil || rep.Server.Requests != float64(rep.Requests) {
		t.Errorf("server view %+v (%s): want %d requests", rep.Server, rep.ServerError, rep.Requests)
	}
	if rep.Replicas != 1 {
		t.Errorf("%d replicas answered, want 1", rep.Replicas)
	}

	dec := vegeta.NewDecoder(&raw)
	n := 0
	for {
		var r vegeta.Result
		err := dec.Decode(&r)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("decoding result %d: %v", n, err)
		}
		if r.Code != 200 || !strings.HasSuffix(r.URL, "/v2/models/tiny/infer") {
			t.Errorf("result %d: code %d url %s", n, r.Code, r.URL)
		}
		n++
	}
	if n != int(rep.Requests) {
		t.Errorf("decoded %d results, report says %d", n, rep.Requests)
	}
	if !strings.Contains(html.String(), "<html") || !strings.Contains(html.String(), "uPlot") {
		t.Errorf("plot is not vegeta's HTML plot: %.200q", html.String())
	}
}

// TestEndpoints: every endpoint, closed loop, all answered.
func TestEndpoints(t *testing.T) {
	url := testserver.Start(t)
	for _, ep := range Endpoints {
		t.Run(string(ep), func(t *testing.T) {
			cfg := Config{URL: url, Model: "tiny", Endpoint: ep, Concurrency: 2, Duration: 300 * time.Millisecond}
			rep, err := cfg.Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if rep.Requests == 0 || rep.Success != 1 {
				t.Errorf("%d requests, success %v, errors %v", rep.Requests, rep.Success, rep.Errors)
			}
			if rep.Concurrency != 2 || rep.Mode != "closed concurrency 2" {
				t.Errorf("mode %q concurrency %d", rep.Mode, rep.Concurrency)
			}
		})
	}
}

// By default the load asks for no compression (Go's client would ask for
// gzip on its own); -accept-encoding gzip gets the server's compressed JSON
// answers, fewer bytes per response.
func TestAcceptEncoding(t *testing.T) {
	url := testserver.Start(t)
	perResponse := map[string]float64{}
	for _, enc := range []string{"", "gzip"} {
		cfg := Config{URL: url, Model: "tiny", Endpoint: InferJSON, Concurrency: 1, Duration: 300 * time.Millisecond,
			AcceptEncoding: enc, NoServerMetrics: true}
		rep, err := cfg.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if rep.Requests == 0 || rep.Success != 1 {
			t.Fatalf("accept-encoding %q: %d requests, success %v, errors %v", enc, rep.Requests, rep.Success, rep.Errors)
		}
		perResponse[enc] = float64(rep.BytesIn) / float64(rep.Requests)
	}
	if perResponse["gzip"] >= perResponse[""]/2 {
		t.Errorf("bytes per answer: %.0f with gzip, %.0f without: want gzip under half", perResponse["gzip"], perResponse[""])
	}
	p, err := prepare(context.Background(), Config{URL: url, Model: "tiny", Endpoint: InferBinary, Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.targets[0].Header.Get("Accept-Encoding"); got != "identity" {
		t.Errorf("default Accept-Encoding %q, want identity", got)
	}
}

// TestServerViewMatchesMetrics compares the report's server view with
// deltas of the server's own /metrics, scraped here around the run.
func TestServerViewMatchesMetrics(t *testing.T) {
	url := testserver.Start(t)
	ctx := context.Background()
	before, err := scrapeText(t, url)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Config{URL: url, Model: "tiny", Endpoint: InferBinary, Concurrency: 8, Duration: time.Second}.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	after, err := scrapeText(t, url)
	if err != nil {
		t.Fatal(err)
	}
	delta := func(name string) float64 { return metricValue(t, after, name) - metricValue(t, before, name) }
	rows := delta(`inferd_batcher_batch_size_sum{model="tiny"}`)
	batches := delta(`inferd_batcher_batch_size_count{model="tiny"}`)
	dispatched := delta(`inferd_batcher_batches_total{model="tiny"}`)
	s := rep.Server
	if s == nil {
		t.Fatalf("no server view: %s", rep.ServerError)
	}
	if rows != float64(rep.Requests) {
		t.Errorf("server batched %v rows, client sent %d requests", rows, rep.Requests)
	}
	if s.Batches != dispatched || batches != dispatched {
		t.Errorf("batches: view %v, batches_total %v, batch_size_count %v", s.Batches, dispatched, batches)
	}
	if want := rows / batches; s.MeanBatch != want {
		t.Errorf("mean batch: view %v, metrics %v", s.MeanBatch, want)
	}
	if s.MeanBatch <= 1 {
		t.Logf("mean batch %.2f at concurrency 8 (a loaded machine may not batch)", s.MeanBatch)
	}
	if s.QueueP99 < s.QueueP50 || s.ComputeP99 < s.ComputeP50 || s.ComputeP50 <= 0 {
		t.Errorf("quantiles out of order: %+v", s)
	}
	if s.Source != SourceMetrics || s.ComputeMean <= 0 || s.ComputeMean > s.ComputeP99*2 {
		t.Errorf("source %q, compute mean %s (p99 %s)", s.Source, s.ComputeMean, s.ComputeP99)
	}
	if len(s.Rejected) != 0 {
		t.Errorf("rejected %v, want none", s.Rejected)
	}
}

// scrapeText fetches /metrics as text.
func scrapeText(t *testing.T, url string) (string, error) {
	t.Helper()
	b, err := get(context.Background(), newProber(url, nil, nil), "/metrics")
	return string(b), err
}

// metricValue finds the line "series value" in a scrape.
func metricValue(t *testing.T, text, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			s, err := parseSample("x " + rest)
			if err != nil {
				t.Fatal(err)
			}
			return s.value
		}
	}
	return 0
}

// TestSweep runs three concurrencies, one twice, and reports each. The
// results of every point are one gob stream that vegeta's decoder reads to
// the end, each point under its own attack name, and the plot has a series
// per point.
func TestSweep(t *testing.T) {
	url := testserver.Start(t)
	var got []*Report
	var raw, html bytes.Buffer
	cfg := Config{URL: url, Model: "tiny", Endpoint: InferBinary, Duration: 300 * time.Millisecond, Output: &raw, Plot: &html}
	err := Sweep(context.Background(), cfg, []float64{1, 4, 1}, true, func(r *Report) error { got = append(got, r); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Concurrency != 1 || got[1].Concurrency != 4 || got[2].Concurrency != 1 {
		t.Fatalf("reports %+v", got)
	}
	var buf bytes.Buffer
	tw := NewTableWriter(&buf)
	for _, r := range got {
		tw.Write(r)
	}
	if lines := strings.Split(strings.TrimSpace(buf.String()), "\n"); len(lines) != 4 ||
		!strings.Contains(lines[0], "p99") || !strings.Contains(lines[2], "c=4") {
		t.Errorf("table:\n%s", buf.String())
	}

	// A repeated point is named apart: vegeta's plot would drop the
	// points of a second attack under the same name.
	names := []string{"closed concurrency 1", "closed concurrency 4", "closed concurrency 1 #2"}
	perAttack := map[string]int{}
	dec := vegeta.NewDecoder(&raw)
	for n := 0; ; n++ {
		var r vegeta.Result
		if err := dec.Decode(&r); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding result %d: %v", n, err)
		}
		perAttack[r.Attack]++
	}
	for i, name := range names {
		if perAttack[name] != int(got[i].Requests) || got[i].Requests == 0 {
			t.Errorf("attack %q: %d results in the stream, the report says %d", name, perAttack[name], got[i].Requests)
		}
	}
	if len(perAttack) != len(names) {
		t.Errorf("attacks in the stream %v, want %q", perAttack, names)
	}
	if page := html.String(); strings.Count(page, "<html") != 1 {
		t.Errorf("want one HTML plot for the sweep, got %d", strings.Count(page, "<html"))
	} else {
		for _, name := range names {
			if !strings.Contains(page, name+": OK") {
				t.Errorf("plot has no series %q", name+": OK")
			}
		}
	}
}

// TestRecognizeFirstModel: /recognize names no model and the server
// answers it with its first; the server view is that model's, counting
// every request, and a model that is not the first is refused up front.
func TestRecognizeFirstModel(t *testing.T) {
	url := testserver.StartModels(t, "first", "second")
	rep, err := Config{URL: url, Endpoint: Recognize, Concurrency: 2, Duration: 300 * time.Millisecond}.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests == 0 || rep.Success != 1 {
		t.Fatalf("%d requests, success %v, errors %v", rep.Requests, rep.Success, rep.Errors)
	}
	if s := rep.Server; s == nil || s.Requests != float64(rep.Requests) || s.Batches < 1 {
		t.Errorf("server view %+v (%s): want the %d requests of model first", s, rep.ServerError, rep.Requests)
	}
	if !strings.HasSuffix(rep.Target, "recognize (model first)") || rep.Replicas != 1 || rep.serverNote() != "" {
		t.Errorf("target %q, replicas %d, note %q", rep.Target, rep.Replicas, rep.serverNote())
	}
	_, err = Config{URL: url, Model: "second", Endpoint: Recognize, Rate: 1}.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), `answered by its first model "first", not "second"`) {
		t.Errorf("recognize with model second: %v", err)
	}
}

// TestBadInput: each mistake fails before load is sent, fast, saying what
// is wrong.
func TestBadInput(t *testing.T) {
	url := testserver.Start(t)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"unreachable", Config{URL: testserver.ClosedURL(t), Model: "tiny", Rate: 1}, "unreachable"},
		{"unknown model", Config{URL: url, Model: "nope", Rate: 1}, `model "nope" not found`},
		{"no load", Config{URL: url, Model: "tiny"}, "neither a rate nor a concurrency"},
		{"both loads", Config{URL: url, Model: "tiny", Rate: 1, Concurrency: 1}, "both a rate and a concurrency"},
		{"bad endpoint", Config{URL: url, Model: "tiny", Endpoint: "grpc", Rate: 1}, `endpoint "grpc"`},
		{"bad url", Config{URL: "localhost:8000", Model: "tiny", Rate: 1}, "want http://host:port"},
		{"bad pacer", Config{URL: url, Model: "tiny", Rate: 1, Pacer: "square"}, `pacer "square"`},
		{"missing images", Config{URL: url, Model: "tiny", Rate: 1, Images: "/nonexistent"}, "images:"},
		{"tensor for classify", Config{URL: url, Model: "tiny", Rate: 1, Tensor: "x"}, "infer endpoints"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			_, err := tt.cfg.Run(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %s to fail", d)
			}
		})
	}
}

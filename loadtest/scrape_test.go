package loadtest

import (
	"math"
	"testing"
	"time"
)

func TestQuantile(t *testing.T) {
	inf := math.Inf(1)
	tests := []struct {
		name string
		q    float64
		bs   []bucket
		want float64
	}{
		{"empty", .5, nil, math.NaN()},
		{"no observations", .5, []bucket{{1, 0}, {inf, 0}}, math.NaN()},
		{"first bucket from 0", .5, []bucket{{1, 10}, {2, 10}, {inf, 10}}, 0.5},
		{"interpolated", .5, []bucket{{1, 0}, {2, 10}, {inf, 10}}, 1.5},
		{"p99 in second", .99, []bucket{{1, 50}, {3, 100}, {inf, 100}}, 1 + 2*(99-50)/50.0},
		{"in +Inf", .99, []bucket{{1, 50}, {2, 60}, {inf, 100}}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := quantile(tt.q, tt.bs)
			if !(got == tt.want || math.IsNaN(got) && math.IsNaN(tt.want) || math.Abs(got-tt.want) < 1e-9) {
				t.Errorf("quantile(%v) = %v, want %v", tt.q, got, tt.want)
			}
		})
	}
}

func TestParseSample(t *testing.T) {
	tests := []struct {
		line   string
		name   string
		labels map[string]string
		value  float64
		bad    bool
	}{
		{line: "up 1", name: "up", value: 1},
		{line: `x_bucket{model="tiny",le="0.5"} 3`, name: "x_bucket", labels: map[string]string{"model": "tiny", "le": "0.5"}, value: 3},
		{line: `x{a="q\"uo\\te"} 2.5e3 1700000000`, name: "x", labels: map[string]string{"a": `q"uo\te`}, value: 2500},
		{line: `x{le="+Inf"} +Inf`, name: "x", labels: map[string]string{"le": "+Inf"}, value: math.Inf(1)},
		{line: "novalue", bad: true},
		{line: `x{a="b} 1`, bad: true},
		{line: "x one", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			s, err := parseSample(tt.line)
			if tt.bad {
				if err == nil {
					t.Fatalf("parsed %+v", s)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.name != tt.name || s.value != tt.value || len(s.labels) != len(tt.labels) {
				t.Fatalf("got %+v", s)
			}
			for k, v := range tt.labels {
				if s.labels[k] != v {
					t.Errorf("label %s = %q, want %q", k, s.labels[k], v)
				}
			}
		})
	}
}

// TestServerViewDeltas computes a view from two hand-written scrapes.
func TestServerViewDeltas(t *testing.T) {
	before, err := parseMetrics([]byte(`# HELP inferd_batcher_batch_size rows
inferd_batcher_batch_size_bucket{model="m",le="1"} 5
inferd_batcher_batch_size_bucket{model="m",le="+Inf"} 5
inferd_batcher_batch_size_sum{model="m"} 5
inferd_batcher_batch_size_count{model="m"} 5
inferd_batcher_batch_size_sum{model="other"} 100
inferd_batcher_batch_size_count{model="other"} 1
inferd_batcher_run_seconds_bucket{model="m",le="0.01"} 5
inferd_batcher_run_seconds_bucket{model="m",le="0.02"} 5
inferd_batcher_run_seconds_bucket{model="m",le="+Inf"} 5
inferd_batcher_requests_rejected_total{model="m",reason="queue_full"} 1
`))
	if err != nil {
		t.Fatal(err)
	}
	after, err := parseMetrics([]byte(`inferd_batcher_batch_size_bucket{model="m",le="1"} 5
inferd_batcher_batch_size_bucket{model="m",le="+Inf"} 15
inferd_batcher_batch_size_sum{model="m"} 45
inferd_batcher_batch_size_count{model="m"} 15
inferd_batcher_batches_total{model="m"} 10
inferd_batcher_run_seconds_bucket{model="m",le="0.01"} 5
inferd_batcher_run_seconds_bucket{model="m",le="0.02"} 15
inferd_batcher_run_seconds_bucket{model="m",le="+Inf"} 15
inferd_batcher_requests_rejected_total{model="m",reason="queue_full"} 4
inferd_batcher_requests_rejected_total{model="m",reason="deadline"} 0
inferd_http_requests_total{model="m",endpoint="infer",code="200"} 40
`))
	if err != nil {
		t.Fatal(err)
	}
	v := serverView(before, after, "m")
	if v.MeanBatch != 4 || v.Batches != 10 || v.Requests != 40 {
		t.Errorf("view %+v: want mean batch 4 (40 rows / 10), 10 batches, 40 requests", v)
	}
	if v.ComputeP50 != 15*time.Millisecond {
		t.Errorf("compute p50 = %s, want 15ms (the middle of the 10-20ms bucket)", v.ComputeP50)
	}
	if len(v.Rejected) != 1 || v.Rejected["queue_full"] != 3 {
		t.Errorf("rejected %v, want queue_full:3", v.Rejected)
	}
}

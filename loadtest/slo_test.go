package loadtest

import (
	"context"
	"testing"
	"time"

	"github.com/inferd/inferd/loadtest/testserver"
)

// TestSearch drives the rate search with a server that passes every rate up
// to a capacity.
func TestSearch(t *testing.T) {
	tests := []struct {
		name     string
		capacity float64
		slo      SLO
		want     float64 // the highest passing rate measured is within Precision below this
		maxTries int
	}{
		{"grow then bisect", 37, SLO{StartRate: 8}, 37, 9},
		{"shrink then bisect", 3, SLO{StartRate: 8}, 3, 8},
		{"capped", 1e9, SLO{StartRate: 8, MaxRate: 100}, 100, 6},
		{"nothing passes", 0, SLO{StartRate: 8, MinRate: 1}, 0, 4},
		{"start is the answer", 8, SLO{StartRate: 8}, 8, 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			slo := tt.slo
			slo.P99 = time.Second
			slo, err := slo.withDefaults()
			if err != nil {
				t.Fatal(err)
			}
			var tried []float64
			best := 0.0
			err = search(slo, func(rate float64) (bool, error) {
				tried = append(tried, rate)
				pass := rate <= tt.capacity
				if pass && rate > best {
					best = rate
				}
				return pass, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if best > tt.want || best < tt.want*(1-slo.Precision) {
				t.Errorf("best %v, want within %v below %v (tried %v)", best, slo.Precision, tt.want, tried)
			}
			if len(tried) > tt.maxTries {
				t.Errorf("%d rates tried, want <= %d: %v", len(tried), tt.maxTries, tried)
			}
		})
	}
}

// TestSLOUnmeetable: a 1ns p99 fails at every rate; the search halves down
// to MinRate and reports 0.
func TestSLOUnmeetable(t *testing.T) {
	url := testserver.Start(t)
	slo := SLO{P99: time.Nanosecond, StartRate: 40, MinRate: 10, Window: 200 * time.Millisecond, MaxWindows: 2}
	res, err := FindSLO(context.Background(), Config{URL: url, Model: "tiny", Endpoint: InferBinary}, slo, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rate != 0 || res.Best != nil || len(res.Trials) != 3 {
		t.Errorf("rate %v after %d trials, want 0 after 40, 20, 10", res.Rate, len(res.Trials))
	}
	for _, tr := range res.Trials {
		if tr.Pass || tr.Windows != 1 {
			t.Errorf("trial %+v: want a fail settled in one window", tr)
		}
	}
}

// TestSLO: with a loose target the search grows from the start rate to the
// cap, every trial passing.
func TestSLO(t *testing.T) {
	url := testserver.Start(t)
	cfg := Config{URL: url, Model: "tiny", Endpoint: InferBinary}
	slo := SLO{P99: 2 * time.Second, StartRate: 20, MaxRate: 40, Window: 300 * time.Millisecond, MaxWindows: 2}
	res, err := FindSLO(context.Background(), cfg, slo, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rate != 40 || res.Best == nil || len(res.Trials) != 2 {
		t.Errorf("rate %v, %d trials; want 40 after 20 and 40", res.Rate, len(res.Trials))
	}
	for _, tr := range res.Trials {
		if !tr.Pass || tr.Windows < 1 || tr.Windows > 2 {
			t.Errorf("trial %+v", tr)
		}
	}
}

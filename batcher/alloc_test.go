//go:build !race

package batcher

import (
	"testing"
	"time"
)

const raceEnabled = false

// TestSubmitAllocs: the steady-state Submit path (a reused Request, a batch
// run and answered) allocates nothing, counting the scheduler and worker
// goroutines too.
func TestSubmitAllocs(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		runs int
	}{
		// Run as soon as a runner is free.
		{"window0", Config{}, 5000},
		// A delay window arms the timer for every batch (each run waits for
		// it on the real clock, hence fewer runs).
		{"window", Config{MaxDelay: 20 * time.Microsecond}, 200},
		// The adaptive window: cost model, rate estimate, trimming.
		{"adaptive", Config{LatencyTarget: 5 * time.Millisecond, InFlight: 2}, 5000},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := mustNew(t, c.cfg, RunnerFunc(nop), nil)
			defer b.Close(t.Context())
			req := &Request{Rows: 1}
			for range 100 { // warm up: done channel, ring and heap sizes, cost model
				if err := b.Submit(req); err != nil {
					t.Fatal(err)
				}
			}
			if n := testing.AllocsPerRun(c.runs, func() { b.Submit(req) }); n != 0 {
				t.Fatalf("%v allocations per Submit, want 0", n)
			}
		})
	}
}

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

// TestAdmitAllocs: the pre-check a server makes before reading a body
// allocates nothing when it admits, with the time check on (run times
// measured).
func TestAdmitAllocs(t *testing.T) {
	b := mustNew(t, Config{}, RunnerFunc(nop), nil)
	defer b.Close(t.Context())
	for range 100 {
		if err := b.Submit(&Request{Rows: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := b.PredictedWait(1, 0); !ok {
		t.Fatal("no run time measured after 100 batches")
	}
	if n := testing.AllocsPerRun(1000, func() {
		if err := b.Admit(4, 1, time.Second); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("%v allocations per Admit, want 0", n)
	}
}

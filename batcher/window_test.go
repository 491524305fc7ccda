package batcher

import (
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Timing tests. They run in a synctest bubble: time is fake and only moves
// when every goroutine is blocked, so durations are exact and nothing sleeps
// on the real clock.

func TestWindowClosesAtMaxDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGate()
		b := mustNew(t, Config{MaxBatchSize: 8, MaxDelay: 5 * ms}, g, nil)
		t0 := time.Now()
		_, d1 := submitAsync(b, &Request{}, "first")
		time.Sleep(2 * ms)
		_, d2 := submitAsync(b, &Request{}, "second") // joins the open window
		<-d1
		<-d2
		b.Close(t.Context())
		if len(g.batches) != 1 || len(g.batches[0]) != 2 {
			t.Fatalf("batches %v, want one of two", g.batches)
		}
		if at := g.starts[0].Sub(t0); at != 5*ms {
			t.Fatalf("batch closed at %v, want 5ms after the oldest arrival", at)
		}
	})
}

func TestFullBatchClosesAtOnce(t *testing.T) {
	cases := []struct {
		name  string
		rows  []int           // submitted in this order at t0
		want  [][]string      // batches
		at    []time.Duration // when each batch starts
		delay time.Duration
	}{
		// Four one-row requests fill a batch of 4: it goes at t0.
		{"exactly full", []int{1, 1, 1, 1}, [][]string{{"r0", "r1", "r2", "r3"}}, []time.Duration{0}, time.Hour},
		// The 3-row request does not fit after 3 rows: the first closes at
		// t0 and the 3-row one waits for its own window.
		{"next does not fit", []int{3, 3}, [][]string{{"r0"}, {"r1"}}, []time.Duration{0, 10 * ms}, 10 * ms},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := newGate()
				b := mustNew(t, Config{MaxBatchSize: 4, MaxDelay: c.delay}, g, nil)
				t0 := time.Now()
				var wg sync.WaitGroup
				for i, rows := range c.rows {
					_, d := submitAsync(b, &Request{Rows: rows}, "r"+string(rune('0'+i)))
					synctest.Wait()
					wg.Go(func() { <-d })
				}
				wg.Wait()
				b.Close(t.Context())
				if len(g.batches) != len(c.want) {
					t.Fatalf("batches %v, want %v", g.batches, c.want)
				}
				for i := range c.want {
					if got := g.starts[i].Sub(t0); got != c.at[i] {
						t.Errorf("batch %d started at %v, want %v", i, got, c.at[i])
					}
				}
			})
		})
	}
}

// blockRunner starts a batcher whose first batch ("block") holds the only
// runner until release is closed.
func blockRunner(t *testing.T, cfg Config, set *metrics.Set) (*Batcher, *gate, chan struct{}) {
	g := newGate()
	b := mustNew(t, cfg, g, set)
	_, d := submitAsync(b, &Request{}, "block")
	synctest.Wait()
	return b, g, d
}

func TestDeadlineExpiresWhileQueued(t *testing.T) {
	cases := []struct {
		name    string
		timeout time.Duration // the request's own
		want    time.Duration // its budget: shortened, never lengthened
	}{
		// No timeout: the default.
		{"default", 0, 50 * ms},
		// A shorter timeout shortens the budget.
		{"shorter", 10 * ms, 10 * ms},
		// A longer one is clamped to the default.
		{"longer", time.Hour, 50 * ms},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				set := metrics.NewSet()
				b, g, dblock := blockRunner(t, Config{DefaultTimeout: 50 * ms}, set)
				time.Sleep(ms)
				req := &Request{Timeout: c.timeout}
				errp, d := submitAsync(b, req, "victim")
				t0 := time.Now()
				<-d
				if !errors.Is(*errp, ErrDeadlineExceeded) {
					t.Fatalf("got %v, want ErrDeadlineExceeded", *errp)
				}
				if waited := time.Since(t0); waited != c.want {
					t.Fatalf("failed after %v, want %v", waited, c.want)
				}
				if got := req.Deadline().Sub(req.Enqueued()); got != c.want {
					t.Fatalf("Deadline - Enqueued = %v, want %v", got, c.want)
				}
				close(g.release)
				<-dblock
				b.Close(t.Context())
				if g.saw("victim") {
					t.Fatal("the runner saw an expired request")
				}
				if v := metricValues(t, set)[`inferd_batcher_requests_rejected_total{model="m",reason="deadline"}`]; v != 1 {
					t.Fatalf("deadline rejections %v", v)
				}
			})
		})
	}
}

// TestDeadlineClosesWindow: a long fixed window still closes early enough
// for the request to finish before its deadline.
func TestDeadlineClosesWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var started time.Duration
		t0 := time.Now()
		b := mustNew(t, Config{MaxDelay: time.Second, DefaultTimeout: 20 * ms}, RunnerFunc(func(*Batch) error {
			started = time.Since(t0)
			time.Sleep(ms)
			return nil
		}), nil)
		if err := b.Submit(&Request{Rows: 1}); err != nil {
			t.Fatal(err)
		}
		b.Close(t.Context())
		// Prior cost of a 1-row batch is 1.1ms, margin 0.2ms.
		if started <= 0 || started > 19*ms {
			t.Fatalf("started at %v: want early enough to finish by 20ms", started)
		}
	})
}

// warm runs n one-row batches one after another so the cost model learns.
func warm(t *testing.T, b *Batcher, n int) {
	for range n {
		if err := b.Submit(&Request{Rows: 1, Payload: "warm"}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAdaptiveClosesBeforeTarget: after a busy spell the measured arrival
// rate says more requests are coming, so a lone request waits to fill its
// bucket; none come, and the batch still closes in time to finish within the
// latency target.
func TestAdaptiveClosesBeforeTarget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const target = 20 * ms
		run := 4 * ms
		b := mustNew(t, Config{Buckets: []int{8}, LatencyTarget: target}, RunnerFunc(func(*Batch) error {
			time.Sleep(run)
			return nil
		}), nil)
		// A stream of one request per ms for 100ms.
		var wg sync.WaitGroup
		for range 100 {
			wg.Go(func() { b.Submit(&Request{Rows: 1}) })
			time.Sleep(ms)
		}
		wg.Wait()
		t0 := time.Now()
		if err := b.Submit(&Request{Rows: 1}); err != nil {
			t.Fatal(err)
		}
		took := time.Since(t0)
		b.Close(t.Context())
		if took > target {
			t.Fatalf("lone request took %v, over the %v target", took, target)
		}
		if took <= run {
			t.Fatalf("lone request took %v: it did not wait for company", took)
		}
		t.Logf("waited %v, ran %v", took-run, run)
	})
}

// TestAdaptiveGreedyWhenIdle: with no recent arrivals waiting cannot help, so
// the adaptive window runs a request at once.
func TestAdaptiveGreedyWhenIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := mustNew(t, Config{LatencyTarget: 50 * ms}, RunnerFunc(func(*Batch) error {
			time.Sleep(2 * ms)
			return nil
		}), nil)
		t0 := time.Now()
		if err := b.Submit(&Request{Rows: 1}); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(t0); took != 2*ms {
			t.Fatalf("took %v, want just the 2ms run", took)
		}
		b.Close(t.Context())
	})
}

// TestAdaptiveSheds: once the model knows a batch takes 5ms, requests that
// could not finish by their deadline even if run next are rejected at once
// and never run.
func TestAdaptiveSheds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		set := metrics.NewSet()
		g := newGate()
		b := mustNew(t, Config{LatencyTarget: 50 * ms, AdmissionShare: 1}, RunnerFunc(func(bt *Batch) error {
			g.add(bt)
			time.Sleep(5 * ms)
			return nil
		}), set)
		warm(t, b, warmSamples)

		cases := []struct {
			name    string
			after   time.Duration // submitted this long after a batch started
			timeout time.Duration
			want    error
			took    time.Duration
		}{
			// 5ms run > 3ms budget, even with the runner free.
			{"too short even if next", 0, 3 * ms, ErrCannotMeetDeadline, 0},
			// 4ms left of the running batch + 5ms > 8ms.
			{"too short behind a batch", ms, 8 * ms, ErrCannotMeetDeadline, 0},
			// 4ms + 5ms <= 10ms: accepted, runs next, done at 9ms.
			{"fits behind a batch", ms, 10 * ms, nil, 9 * ms},
		}
		for _, c := range cases {
			var d0 chan struct{}
			if c.after > 0 {
				_, d0 = submitAsync(b, &Request{}, "running")
				time.Sleep(c.after)
			}
			t0 := time.Now()
			err := b.Submit(&Request{Rows: 1, Timeout: c.timeout, Payload: c.name})
			if !errors.Is(err, c.want) && err != c.want {
				t.Errorf("%s: got %v, want %v", c.name, err, c.want)
			}
			if took := time.Since(t0); took != c.took {
				t.Errorf("%s: took %v, want %v", c.name, took, c.took)
			}
			if ran := g.saw(c.name); ran != (c.want == nil) {
				t.Errorf("%s: ran = %v", c.name, ran)
			}
			if d0 != nil {
				<-d0
			}
		}
		b.Close(t.Context())
		if v := metricValues(t, set)[`inferd_batcher_requests_rejected_total{model="m",reason="cannot_meet_deadline"}`]; v != 2 {
			t.Fatalf("cannot_meet_deadline rejections %v, want 2", v)
		}
	})
}

// TestAdaptiveTrimsToBucket: with buckets 4 and 8 and a warm model, 5 queued
// rows run as 4 now (no padding) and 1 next, not as 5 padded to 8.
func TestAdaptiveTrimsToBucket(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGate()
		b := mustNew(t, Config{Buckets: []int{1, 4, 8}, LatencyTarget: 100 * ms, AdmissionShare: 1}, RunnerFunc(func(bt *Batch) error {
			g.Run(bt)
			time.Sleep(time.Duration(1000+200*bt.Bucket) * time.Microsecond)
			return nil
		}), nil)
		// Teach the model two sizes.
		var wg sync.WaitGroup
		for range 3 {
			for range 4 {
				_, d := submitAsync(b, &Request{}, "warm")
				wg.Go(func() { <-d })
			}
			wg.Wait()
			warm(t, b, 1)
		}
		_, d := submitAsync(b, &Request{}, "block")
		synctest.Wait()
		for i := range 5 {
			_, d := submitAsync(b, &Request{}, "t"+string(rune('0'+i)))
			wg.Go(func() { <-d })
		}
		synctest.Wait()
		close(g.release)
		<-d
		wg.Wait()
		b.Close(t.Context())
		n := len(g.batches)
		if got := g.batches[n-2:]; len(got[0]) != 4 || len(got[1]) != 1 {
			t.Fatalf("last batches %v, want 4 then 1", got)
		}
	})
}

// TestAdaptiveDropsLate: a request admitted because it could finish in time
// if run next is overtaken by a higher-priority one; when its turn comes it
// would finish after its deadline, so it is dropped instead of run late.
func TestAdaptiveDropsLate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGate()
		b := mustNew(t, Config{MaxBatchSize: 1, LatencyTarget: 50 * ms, AdmissionShare: 1}, RunnerFunc(func(bt *Batch) error {
			g.add(bt)
			time.Sleep(5 * ms)
			return nil
		}), nil)
		warm(t, b, warmSamples)
		_, d0 := submitAsync(b, &Request{}, "running")
		time.Sleep(ms)
		// 4ms left + 5ms run <= 10ms: admitted.
		errp, d1 := submitAsync(b, &Request{Priority: 1, Timeout: 10 * ms}, "late")
		synctest.Wait()
		t0 := time.Now()
		_, d2 := submitAsync(b, &Request{Priority: 0}, "urgent") // runs first
		<-d1
		if !errors.Is(*errp, ErrCannotMeetDeadline) {
			t.Fatalf("got %v, want ErrCannotMeetDeadline", *errp)
		}
		// Dropped when its turn came, after the running batch (4ms left) and
		// the urgent one (5ms), 1ms before its deadline, rather than run to
		// finish 4ms late.
		if took := time.Since(t0); took != 9*ms {
			t.Fatalf("dropped after %v, want 9ms", took)
		}
		<-d0
		<-d2
		b.Close(t.Context())
		if g.saw("late") {
			t.Fatal("the late request ran")
		}
	})
}

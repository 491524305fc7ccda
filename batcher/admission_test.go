package batcher

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/inferd/inferd/httperr"
)

// fixedRunner takes d per batch whatever its size, on the (fake) clock.
func fixedRunner(d time.Duration) RunnerFunc {
	return func(*Batch) error {
		time.Sleep(d)
		return nil
	}
}

// TestOverload drives a batcher whose runner takes a fixed 10ms per batch of
// up to 8 rows at 2, 5 and 10 times what it can serve, for one second of
// fake time, with the default 200ms budget. Every Submit returns; the excess
// is rejected at once with ErrOverloaded and a RetryAfter, never left to
// expire in the queue; every admitted request is answered within its
// deadline plus one batch; the device stays busy; and once the load stops,
// requests are admitted again.
func TestOverload(t *testing.T) {
	const (
		batch   = 10 * ms
		timeout = 200 * ms
		span    = time.Second
	)
	cases := []struct {
		load     float64
		inFlight int
		maxRows  int // requests carry 1..maxRows rows
	}{
		{2, 1, 1},
		{5, 1, 1},
		{10, 1, 1},
		// Two runners, and requests of several rows.
		{5, 2, 3},
		{10, 2, 3},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("load%gx/inflight%d/rows%d", c.load, c.inFlight, c.maxRows), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				set := metrics.NewSet()
				var busy atomic.Int64 // batches started in [span/5, span)
				t0 := time.Now()
				b := mustNew(t, Config{MaxBatchSize: 8, InFlight: c.inFlight, DefaultTimeout: timeout}, RunnerFunc(func(*Batch) error {
					if at := time.Since(t0); at >= span/5 && at < span {
						busy.Add(1)
					}
					time.Sleep(batch)
					return nil
				}), set)
				capacity := float64(8*c.inFlight) / batch.Seconds() // rows/s
				meanRows := float64(1+c.maxRows) / 2
				gap := time.Duration(float64(time.Second) * meanRows / (c.load * capacity))
				rng := rand.New(rand.NewPCG(uint64(c.load), 3))
				type result struct {
					at   time.Duration // submitted, since t0
					took time.Duration
					err  error
				}
				var (
					mu      sync.Mutex
					results []result
					wg      sync.WaitGroup
				)
				for time.Since(t0) < span {
					rows := 1 + rng.IntN(c.maxRows)
					at := time.Since(t0)
					wg.Go(func() {
						start := time.Now()
						err := b.Submit(&Request{Rows: rows})
						mu.Lock()
						results = append(results, result{at, time.Since(start), err})
						mu.Unlock()
					})
					time.Sleep(time.Duration(rng.ExpFloat64() * float64(gap)))
				}
				wg.Wait()
				rejected := 0
				for _, r := range results {
					switch {
					case r.err == nil:
						if r.took > timeout+batch {
							t.Errorf("admitted at %v, answered after %v: later than its deadline plus one batch", r.at, r.took)
						}
					case errors.Is(r.err, ErrOverloaded):
						rejected++
						var be *httperr.Error
						errors.As(r.err, &be)
						if r.took != 0 || be.RetryAfter <= 0 || be.StatusCode() != 503 {
							t.Errorf("rejected after %v with RetryAfter %v status %d: want at once, a RetryAfter, 503", r.took, be.RetryAfter, be.StatusCode())
						}
					default:
						t.Errorf("submitted at %v: %v after %v; want success or ErrOverloaded at once", r.at, r.err, r.took)
					}
				}
				// Once past the cold start, admission keeps enough queued
				// for the device never to idle.
				want := int64((span * 4 / 5) / batch * time.Duration(c.inFlight))
				if got := busy.Load(); got < want {
					t.Errorf("%d batches ran in the last 0.8s, want %d", got, want)
				}
				if rejected == 0 {
					t.Error("nothing was rejected")
				}
				m := metricValues(t, set)
				if v := m[`inferd_batcher_requests_rejected_total{model="m",reason="overloaded"}`]; v != float64(rejected) {
					t.Errorf("overloaded rejections metric %v, want %d", v, rejected)
				}
				if v := m[`inferd_batcher_requests_rejected_total{model="m",reason="deadline"}`]; v != 0 {
					t.Errorf("deadline rejections metric %v, want 0", v)
				}
				// The load stops: the queue drains and a request fits again.
				time.Sleep(timeout)
				if err := b.Admit(8, 1, 0); err != nil {
					t.Errorf("Admit after the load: %v", err)
				}
				if err := b.Submit(&Request{Rows: 8, Priority: 1}); err != nil {
					t.Errorf("Submit after the load: %v", err)
				}
				b.Close(t.Context())
				t.Logf("%d requests, %.0f%% rejected", len(results), 100*float64(rejected)/float64(len(results)))
			})
		})
	}
}

// warmFixed teaches a batcher with MaxBatchSize 8 its run time at buckets 1
// and 8: a one-row batch on every runner, then a batch of 8 queued behind
// them.
func warmFixed(t *testing.T, b *Batcher) {
	var dones []chan struct{}
	for range b.Config().InFlight + 8 {
		_, d := submitAsync(b, &Request{}, "warm")
		dones = append(dones, d)
		if len(dones) <= b.Config().InFlight {
			synctest.Wait() // on its own runner
		}
	}
	for _, d := range dones {
		<-d
	}
	synctest.Wait() // the workers have handed the batches back
}

// TestAdmitAgreesWithSubmit puts a batcher in known states and checks that
// Admit gives the answer Submit gives right after it, and that the answers
// are the ones the prediction in admission.go says.
func TestAdmitAgreesWithSubmit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// 10ms per batch whatever its size: c = 10ms/8 rows = 1.25ms a row.
		b := mustNew(t, Config{MaxBatchSize: 8, QueueCapacity: 12, DefaultTimeout: time.Second, AdmissionShare: 1}, fixedRunner(10*ms), nil)
		warmFixed(t, b)
		var dones []chan struct{}
		queue := func(n, prio int) {
			for range n {
				_, d := submitAsync(b, &Request{Priority: prio}, "q")
				dones = append(dones, d)
			}
			synctest.Wait()
		}
		queue(1, 1) // runs at once, busy until +10ms
		time.Sleep(2 * ms)
		// Now: Rmin 8ms, nothing queued.
		cases := []struct {
			name    string
			before  func()
			rows    int
			prio    int
			timeout time.Duration
			want    error // nil: admitted
			retry   time.Duration
			msg     string // substring of the message
		}{
			{name: "rows zero", rows: 0, want: ErrBadRequest, msg: "rows 0 out of range [1, 8]"},
			{name: "rows too many", rows: 9, want: ErrBadRequest, msg: "rows 9 out of range"},
			{name: "priority out of range", rows: 1, prio: 2, want: ErrBadRequest, msg: "priority 2 out of range"},
			{name: "negative timeout", rows: 1, timeout: -1, want: ErrBadRequest, msg: "timeout -1ns"},
			// Its own 10ms run does not fit 5ms: no retry helps.
			{name: "budget below its own run", rows: 1, timeout: 5 * ms, want: ErrCannotMeetDeadline, retry: 0,
				msg: "its batch alone runs for 10ms, longer than the request's deadline budget of 5ms; raise the request's timeout or default_timeout"},
			// 8ms left of the running batch + 10ms > 15ms: retry in 3ms.
			{name: "busy device", rows: 1, timeout: 15 * ms, want: ErrCannotMeetDeadline, retry: 3 * ms,
				msg: "predicted wait 18ms even if run next (the device is busy) exceeds the request's deadline budget of 15ms; retry later"},
			// 8 + 10 = 18ms fits 20ms: admitted, joins the next batch.
			{name: "fits next batch", rows: 1, timeout: 20 * ms, want: nil},
			// 6 more rows queued at priority 1: not ahead of priority 0.
			{name: "lower priority is not ahead", before: func() { queue(6, 1) }, rows: 1, timeout: 20 * ms, want: nil},
			// 8 queued: a 1-row request waits for a full batch: busy 8ms +
			// 8 rows × 1.25ms + 10ms = 28ms > 25ms.
			{name: "behind a full batch", rows: 1, prio: 1, timeout: 25 * ms, want: ErrOverloaded, retry: 3 * ms,
				msg: "batcher: overloaded: predicted wait 28ms exceeds the request's deadline budget of 25ms; retry later or add replicas"},
			// 2 rows ahead at priority 0: it joins the next batch.
			{name: "higher priority passes", rows: 1, prio: 0, timeout: 25 * ms, want: nil},
			// 9 rows at priority >= 1 now: 8 + 11.25 + 10 > 29ms.
			{name: "behind both", rows: 1, prio: 1, timeout: 29 * ms, want: ErrOverloaded, retry: 250 * time.Microsecond},
			{name: "fits behind both", rows: 1, prio: 1, timeout: 30 * ms, want: nil},
			// 10 requests wait; fill to the cap of 12 with long budgets.
			{name: "cap reached", before: func() { queue(2, 1) }, rows: 1, prio: 0, timeout: time.Second, want: ErrQueueFull, retry: 8 * ms,
				msg: "batcher: queue full (capacity 12): raise queue_capacity or add replicas"},
		}
		for _, c := range cases {
			if c.before != nil {
				c.before()
			}
			admit := b.Admit(c.rows, c.prio, c.timeout)
			var sub error
			d := make(chan struct{})
			go func() {
				sub = b.Submit(&Request{Rows: c.rows, Priority: c.prio, Timeout: c.timeout, Payload: c.name})
				close(d)
			}()
			synctest.Wait()
			select {
			case <-d:
			default: // queued
				dones = append(dones, d)
			}
			if !sameKind(admit, c.want) || !sameKind(sub, c.want) {
				t.Errorf("%s: Admit %v, Submit %v; want %v", c.name, admit, sub, c.want)
				continue
			}
			if c.want == nil {
				continue
			}
			for _, err := range []error{admit, sub} {
				be := err.(*httperr.Error)
				if be.RetryAfter != c.retry {
					t.Errorf("%s: RetryAfter %v, want %v", c.name, be.RetryAfter, c.retry)
				}
				if !strings.Contains(err.Error(), c.msg) {
					t.Errorf("%s: message %q does not contain %q", c.name, err, c.msg)
				}
			}
		}
		for _, d := range dones {
			<-d
		}
		b.Close(t.Context())
		if err, err2 := b.Admit(1, 0, 0), b.Submit(&Request{Rows: 1}); !errors.Is(err, ErrClosed) || !errors.Is(err2, ErrClosed) {
			t.Errorf("closed: Admit %v, Submit %v", err, err2)
		}
	})
}

// sameKind reports whether err is want's kind (nil for nil).
func sameKind(err, want error) bool {
	if want == nil {
		return err == nil
	}
	return errors.Is(err, want)
}

// TestColdStart: before any batch has finished nothing is measured, so only
// the queue cap rejects, even requests that will expire.
func TestColdStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, g, dblock := blockRunner(t, Config{QueueCapacity: 4}, nil)
		if _, ok := b.PredictedWait(1, 0); ok {
			t.Fatal("a prediction before any run time is known")
		}
		var errs []*error
		var dones []chan struct{}
		for i := range 4 {
			if err := b.Admit(1, 0, ms); err != nil {
				t.Fatalf("Admit %d: %v", i, err)
			}
			e, d := submitAsync(b, &Request{Timeout: ms}, "cold")
			errs, dones = append(errs, e), append(dones, d)
		}
		synctest.Wait()
		err, err2 := b.Admit(1, 0, ms), b.Submit(&Request{Rows: 1, Timeout: ms})
		for _, e := range []error{err, err2} {
			if !errors.Is(e, ErrQueueFull) || e.(*httperr.Error).RetryAfter != 0 {
				t.Fatalf("fifth request: %v (RetryAfter %v), want ErrQueueFull without RetryAfter", e, e.(*httperr.Error).RetryAfter)
			}
		}
		for i, d := range dones {
			<-d
			if !errors.Is(*errs[i], ErrDeadlineExceeded) {
				t.Fatalf("queued request %d: %v, want it to expire", i, *errs[i])
			}
		}
		close(g.release)
		<-dblock
		b.Close(t.Context())
	})
}

// TestSeededAdmission: run times measured at warm-up protect a batcher from
// its first request.
func TestSeededAdmission(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		set := metrics.NewSet()
		cfg := Config{MaxBatchSize: 8, Buckets: []int{1, 2, 4, 8}, DefaultTimeout: time.Second, AdmissionShare: 1,
			BucketRunTimes: []time.Duration{23 * ms, 41 * ms, 77 * ms, 149 * ms}}
		b, g, dblock := blockRunner(t, cfg, set)
		// 1 row would take 23ms: a 20ms budget cannot be met.
		if err := b.Admit(1, 0, 20*ms); !errors.Is(err, ErrCannotMeetDeadline) {
			t.Fatalf("20ms budget: %v", err)
		}
		// The block batch (1 row, predicted 23ms) runs: 8 queued rows
		// fill one batch, the 9th waits 23 + 8×149/8 + 149 = 321ms (8 rows
		// at 149ms per 8 is the most efficient bucket).
		for range 8 {
			if err := b.Admit(1, 0, 0); err != nil {
				t.Fatal(err)
			}
			submitAsync(b, &Request{}, "queued")
		}
		synctest.Wait()
		err := b.Submit(&Request{Rows: 1, Timeout: 300 * ms})
		if !errors.Is(err, ErrOverloaded) || !strings.Contains(err.Error(), "predicted wait 321ms exceeds the request's deadline budget of 300ms") {
			t.Fatalf("9th request: %v", err)
		}
		if w, ok := b.PredictedWait(1, 1); !ok || w != 321*ms {
			t.Fatalf("PredictedWait %v %v, want 321ms", w, ok)
		}
		m := metricValues(t, set)
		if v := m[`inferd_batcher_throughput_rows_per_second{model="m"}`]; v < 53.6 || v > 53.7 {
			t.Errorf("throughput gauge %v, want 8/149ms = 53.7", v)
		}
		if v := m[`inferd_batcher_predicted_wait_seconds{model="m"}`]; v != 0.321 {
			t.Errorf("predicted wait gauge %v, want 0.321", v)
		}
		close(g.release)
		<-dblock
		b.Close(t.Context())
	})
}

// TestAdmissionShare: by default admission fills 0.8 of a request's
// budget, keeping the rest as margin: the 9th request of TestSeededAdmission
// (predicted wait 321ms) is refused with a 400ms budget (320ms admissible)
// and admitted with 402ms; a share outside (0, 1] is refused.
func TestAdmissionShare(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{MaxBatchSize: 8, Buckets: []int{1, 2, 4, 8}, DefaultTimeout: time.Second,
			BucketRunTimes: []time.Duration{23 * ms, 41 * ms, 77 * ms, 149 * ms}}
		b, g, dblock := blockRunner(t, cfg, nil)
		for range 8 {
			submitAsync(b, &Request{}, "queued")
		}
		synctest.Wait()
		err := b.Admit(1, 0, 400*ms)
		if !errors.Is(err, ErrOverloaded) || !strings.Contains(err.Error(), "predicted wait 321ms exceeds 320ms, the share of the request's deadline budget of 400ms") {
			t.Errorf("400ms budget: %v", err)
		}
		if d := httperr.RetryAfter(err); d != ms {
			t.Errorf("RetryAfter %v, want 1ms (321 - 320)", d)
		}
		if err := b.Admit(1, 0, 402*ms); err != nil {
			t.Errorf("402ms budget: %v", err)
		}
		close(g.release)
		<-dblock
		b.Close(t.Context())
	})
	for _, share := range []float64{-0.1, 1.5} {
		if err := (Config{AdmissionShare: share}).Validate(); err == nil || !strings.Contains(err.Error(), "admission_share") {
			t.Errorf("share %v: %v", share, err)
		}
	}
}

// TestMeasuredRunTimes: a completed batch replaces its bucket's seed, and
// the throughput gauge follows the most efficient bucket.
func TestMeasuredRunTimes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		set := metrics.NewSet()
		b := mustNew(t, Config{MaxBatchSize: 8, InFlight: 2, BucketRunTimes: []time.Duration{0, 0, 0, 80 * ms}},
			fixedRunner(10*ms), set)
		gauge := func() float64 {
			return metricValues(t, set)[`inferd_batcher_throughput_rows_per_second{model="m"}`]
		}
		if v := gauge(); v != 200 { // 2 runners × 8 rows / 80ms
			t.Fatalf("seeded throughput %v, want 200", v)
		}
		warmFixed(t, b)
		if v := gauge(); v != 1600 { // 2 × 8 / 10ms, the seed weighs nothing once replaced
			t.Fatalf("measured throughput %v, want 1600", v)
		}
		b.Close(t.Context())
	})
}

// TestSlackGrowsOnMisses: requests that expire in the queue although
// they were admitted mean the queue drains slower than predicted; the
// prediction for what is queued then grows (by the slack), where a twin
// batcher with the same queue and no misses keeps its own.
func TestSlackGrowsOnMisses(t *testing.T) {
	predicted := func(misses int) time.Duration {
		var p time.Duration
		synctest.Test(t, func(t *testing.T) {
			release := make(chan struct{})
			b := mustNew(t, Config{MaxBatchSize: 8, DefaultTimeout: time.Second,
				BucketRunTimes: []time.Duration{10 * ms, 10 * ms, 10 * ms, 10 * ms}},
				RunnerFunc(func(*Batch) error { <-release; return nil }), nil)
			var wg sync.WaitGroup
			submit := func(prio int, timeout time.Duration) {
				wg.Go(func() { b.Submit(&Request{Rows: 8, Priority: prio, Timeout: timeout}) })
				synctest.Wait()
			}
			submit(1, 0) // runs, and holds the runner
			for range 20 {
				submit(1, 0)
			}
			// Admitted at the high priority (the runner is predicted free
			// in 10ms), then expired: the runner never comes back.
			for range misses {
				submit(0, 30*ms)
			}
			time.Sleep(40 * ms)
			synctest.Wait()
			p, _ = b.PredictedWait(1, 1)
			close(release)
			wg.Wait()
			b.Close(t.Context())
		})
		return p
	}
	without, with := predicted(0), predicted(3)
	if with < without*6/5 {
		t.Errorf("predicted wait %v after misses, %v without: want the slack to lengthen it", with, without)
	}
}

// TestAdmissionFollowsASlowerDevice: the runner's batches take 10ms, then,
// from 0.3s on, 25ms (other work came onto the host). Requests admitted on
// the old times may expire in the queue, but the measured run times (and
// the slack, on misses) follow: in the last half second none expires, and
// the excess is still refused at once.
func TestAdmissionFollowsASlowerDevice(t *testing.T) {
	const timeout = 100 * ms
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		b := mustNew(t, Config{MaxBatchSize: 8, DefaultTimeout: timeout}, RunnerFunc(func(*Batch) error {
			if time.Since(t0) < 300*ms {
				time.Sleep(10 * ms)
			} else {
				time.Sleep(25 * ms)
			}
			return nil
		}), nil)
		var (
			mu                     sync.Mutex
			lateMisses, overloaded int
			wg                     sync.WaitGroup
		)
		for time.Since(t0) < 1500*ms {
			at := time.Since(t0)
			wg.Go(func() {
				err := b.Submit(&Request{Rows: 1})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case errors.Is(err, ErrDeadlineExceeded) && at >= time.Second:
					lateMisses++
				case errors.Is(err, ErrOverloaded):
					overloaded++
				}
			})
			time.Sleep(ms / 2) // 2000 rows/s against 800, then 320
		}
		wg.Wait()
		if lateMisses > 0 {
			t.Errorf("%d requests admitted after 1s expired in the queue: the slack did not learn", lateMisses)
		}
		if overloaded == 0 {
			t.Error("nothing refused as overloaded")
		}
		b.Close(t.Context())
	})
}

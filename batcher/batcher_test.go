package batcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/inferd/inferd/httperr"
)

// TestPropertyFakeClock submits requests of random sizes, priorities and
// timeouts at random (fake-clock) times against an echo runner whose run time
// grows with the batch. Every request must get exactly its own rows back,
// once, or fail without ever running; every batch must respect the batch
// invariants.
func TestPropertyFakeClock(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
	}{
		// Run as soon as a runner is free, one runner.
		{"window0/inflight1", Config{MaxBatchSize: 16}},
		// Fixed window, three runners, three priority levels.
		{"window2ms/inflight3", Config{MaxBatchSize: 16, MaxDelay: 2 * ms, InFlight: 3, Priorities: 3}},
		// Adaptive window (trims, drops, sheds), two runners.
		{"adaptive/inflight2", Config{MaxBatchSize: 16, LatencyTarget: 8 * ms, InFlight: 2, Priorities: 3}},
		// Odd buckets and a small queue (some requests get ErrQueueFull).
		{"buckets/queue8", Config{Buckets: []int{3, 7, 12}, MaxDelay: ms, QueueCapacity: 8}},
	}
	for _, c := range cases {
		for seed := range uint64(3) {
			t.Run(fmt.Sprintf("%s/seed%d", c.name, seed), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) { propertyRun(t, c.cfg, seed) })
			})
		}
	}
}

func propertyRun(t *testing.T, cfg Config, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 99))
	full, _ := cfg.withDefaults()
	var bad atomic.Value
	var order sync.Mutex
	lastEnq := map[int]time.Time{} // per priority, for FIFO across batches with one runner
	b := mustNew(t, cfg, RunnerFunc(func(bt *Batch) error {
		if msg := checkBatch(bt, full, true); msg != "" {
			bad.Store(msg)
		}
		if full.InFlight == 1 {
			order.Lock()
			for _, r := range bt.Requests {
				if r.Enqueued().Before(lastEnq[r.Priority]) {
					bad.Store("not fifo across batches")
				}
				lastEnq[r.Priority] = r.Enqueued()
			}
			order.Unlock()
		}
		echoRun(bt)
		time.Sleep(500*time.Microsecond + time.Duration(bt.Bucket)*100*time.Microsecond)
		return nil
	}), nil)

	const n = 400
	payloads := make([]*echoPayload, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		time.Sleep(time.Duration(rng.ExpFloat64() * float64(300*time.Microsecond)))
		rows := 1 + rng.IntN(full.MaxBatchSize)
		if rng.IntN(3) > 0 {
			rows = 1 + rng.IntN(3) // mostly small
		}
		p := newEcho(i, rows)
		payloads[i] = p
		req := &Request{Rows: rows, Priority: rng.IntN(full.Priorities), Payload: p}
		if rng.IntN(4) == 0 {
			req.Timeout = time.Duration(1+rng.IntN(10)) * ms // some will expire
		}
		wg.Go(func() { errs[i] = b.Submit(req) })
	}
	wg.Wait()
	if err := b.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if v := bad.Load(); v != nil {
		t.Fatal(v)
	}
	counts := map[string]int{}
	for i, p := range payloads {
		switch err := errs[i]; {
		case err == nil:
			counts["ok"]++
			if !p.check() {
				t.Fatalf("request %d: runs=%d, out %v for in %v", i, p.runs.Load(), p.out, p.in)
			}
		case errors.Is(err, ErrDeadlineExceeded), errors.Is(err, ErrCannotMeetDeadline), errors.Is(err, ErrQueueFull), errors.Is(err, ErrOverloaded):
			counts[err.Error()[:20]]++
			if be := err.(*httperr.Error); errors.Is(err, ErrOverloaded) && be.RetryAfter <= 0 {
				t.Fatalf("request %d: %v with RetryAfter %v", i, err, be.RetryAfter)
			}
			if p.runs.Load() != 0 {
				t.Fatalf("request %d failed with %v but ran %d times", i, err, p.runs.Load())
			}
		default:
			t.Fatalf("request %d: unexpected error %v", i, err)
		}
	}
	if counts["ok"] < n/4 {
		t.Fatalf("only %d of %d succeeded: %v", counts["ok"], n, counts)
	}
	t.Log(counts)
}

// TestPropertyRealClock hammers the batcher from many goroutines on the real
// scheduler (the race detector's best chance) and checks every request got
// its own rows once.
func TestPropertyRealClock(t *testing.T) {
	for _, cfg := range []Config{
		{MaxBatchSize: 16, InFlight: 1},
		{MaxBatchSize: 16, InFlight: 3, Priorities: 4},
		{MaxBatchSize: 16, InFlight: 2, LatencyTarget: 5 * ms},
	} {
		t.Run(fmt.Sprintf("inflight%d/adaptive=%v", cfg.InFlight, cfg.LatencyTarget > 0), func(t *testing.T) {
			full, _ := cfg.withDefaults()
			var bad atomic.Value
			b := mustNew(t, cfg, RunnerFunc(func(bt *Batch) error {
				if msg := checkBatch(bt, full, false); msg != "" {
					bad.Store(msg)
				}
				echoRun(bt)
				return nil
			}), nil)
			var wg sync.WaitGroup
			for g := range 32 {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(g), 7))
					req := &Request{} // reused, as a pooling caller would
					for i := range 200 {
						p := newEcho(g*1000+i, 1+rng.IntN(5))
						req.Rows, req.Priority, req.Payload = len(p.in), rng.IntN(full.Priorities), p
						if err := b.Submit(req); err != nil {
							t.Error(err)
							return
						}
						if !p.check() {
							t.Errorf("goroutine %d request %d: wrong or repeated rows", g, i)
							return
						}
					}
				})
			}
			wg.Wait()
			if err := b.Close(t.Context()); err != nil {
				t.Fatal(err)
			}
			if v := bad.Load(); v != nil {
				t.Fatal(v)
			}
		})
	}
}

// gate is a runner that records batches and blocks on batches holding a
// payload named "block*" until released.
type gate struct {
	recorder
	release chan struct{}
	fail    func(bt *Batch) error
}

func newGate() *gate { return &gate{release: make(chan struct{})} }

func (g *gate) Run(bt *Batch) error {
	g.add(bt)
	for _, r := range bt.Requests {
		if strings.HasPrefix(r.Payload.(string), "block") {
			<-g.release
			break
		}
	}
	if g.fail != nil {
		return g.fail(bt)
	}
	return nil
}

// submitAsync submits a request named name and returns where its result
// lands once done is closed.
func submitAsync(b *Batcher, req *Request, name string) (errp *error, done chan struct{}) {
	req.Payload = name
	if req.Rows == 0 {
		req.Rows = 1
	}
	done = make(chan struct{})
	errp = new(error)
	go func() {
		*errp = b.Submit(req)
		close(done)
	}()
	return errp, done
}

func TestPriorityOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGate()
		b := mustNew(t, Config{MaxBatchSize: 4}, g, nil)
		var dones []chan struct{}
		submit := func(name string, prio int) {
			_, d := submitAsync(b, &Request{Priority: prio}, name)
			dones = append(dones, d)
			synctest.Wait() // fix the arrival order
		}
		submit("block", 0)
		for _, name := range []string{"low1", "low2", "low3"} {
			submit(name, 1)
		}
		submit("high1", 0)
		submit("high2", 0)
		close(g.release)
		for _, d := range dones {
			<-d
		}
		b.Close(t.Context())
		want := [][]string{{"block"}, {"high1", "high2", "low1", "low2"}, {"low3"}}
		if !slices.EqualFunc(g.batches, want, slices.Equal) {
			t.Fatalf("batches %v, want %v", g.batches, want)
		}
	})
}

func TestRunnerErrorFailsOnlyItsBatch(t *testing.T) {
	cases := []struct {
		name string
		err  error
		code int
	}{
		// A plain error: 500, message kept, identity kept.
		{"plain", io.ErrUnexpectedEOF, 500},
		// An error with a status code (say, a bad input tensor) keeps it.
		{"coded", &codedErr{code: 422}, 422},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := newGate()
				g.fail = func(bt *Batch) error {
					if bt.Requests[0].Payload == "block-bad" {
						return c.err
					}
					return nil
				}
				b := mustNew(t, Config{}, g, nil)
				e1, d1 := submitAsync(b, &Request{}, "block-bad")
				synctest.Wait()
				e2, d2 := submitAsync(b, &Request{}, "later1") // queued behind: next batch
				<-waitOrRelease(d1, g)
				<-d2
				if err := b.Submit(&Request{Rows: 1, Payload: "later2"}); err != nil {
					t.Fatalf("batch after the failed one: %v", err)
				}
				b.Close(t.Context())
				var be *httperr.Error
				if !errors.Is(*e1, ErrRunFailed) || !errors.Is(*e1, c.err) || !errors.As(*e1, &be) || be.StatusCode() != c.code {
					t.Fatalf("failed batch got %v", *e1)
				}
				if want := "batcher: run failed: " + c.err.Error(); (*e1).Error() != want {
					t.Fatalf("message %q, want %q", *e1, want)
				}
				if *e2 != nil {
					t.Fatalf("request in the next batch got %v", *e2)
				}
			})
		})
	}
}

// waitOrRelease releases the gate and returns d.
func waitOrRelease(d chan struct{}, g *gate) chan struct{} {
	close(g.release)
	return d
}

func TestRunnerPanic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		set := metrics.NewSet()
		var calls atomic.Int32
		b := mustNew(t, Config{}, RunnerFunc(func(bt *Batch) error {
			if calls.Add(1) == 1 {
				panic("kaboom")
			}
			return nil
		}), set)
		err := b.Submit(&Request{Rows: 1})
		var be *httperr.Error
		if !errors.Is(err, ErrRunnerPanic) || !errors.As(err, &be) || be.StatusCode() != 500 || err.Error() != "batcher: runner panicked: kaboom" {
			t.Fatalf("got %v", err)
		}
		for range 3 {
			if err := b.Submit(&Request{Rows: 1}); err != nil {
				t.Fatalf("after the panic: %v", err)
			}
		}
		if err := b.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		if v := metricValues(t, set)[`inferd_batcher_batches_in_flight{model="m"}`]; v != 0 {
			t.Fatalf("in flight %v after a panic", v)
		}
	})
}

func TestBadRequests(t *testing.T) {
	cases := []struct {
		name string
		req  *Request
		want string
	}{
		// A request needs at least one row.
		{"zero rows", &Request{Rows: 0}, "batcher: bad request: rows 0 out of range [1, 8]"},
		// Requests are never split, so at most MaxBatchSize rows.
		{"too many rows", &Request{Rows: 9}, "rows 9 out of range [1, 8]"},
		// Priorities are 0..Priorities-1.
		{"priority negative", &Request{Rows: 1, Priority: -1}, "priority -1 out of range [0, 2]"},
		{"priority too low", &Request{Rows: 1, Priority: 3}, "priority 3 out of range [0, 2]"},
		// A negative timeout is a caller bug, not an expired request.
		{"timeout negative", &Request{Rows: 1, Timeout: -ms}, "timeout -1ms: must be >= 0"},
		// Nil is rejected rather than panicking.
		{"nil", nil, "batcher: bad request: nil request"},
	}
	set := metrics.NewSet()
	b := mustNew(t, Config{MaxBatchSize: 8, Priorities: 3}, RunnerFunc(nop), set)
	defer b.Close(t.Context())
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := b.Submit(c.req)
			var be *httperr.Error
			if !errors.Is(err, ErrBadRequest) || !errors.As(err, &be) || be.StatusCode() != 400 || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
	if v := metricValues(t, set)[`inferd_batcher_requests_rejected_total{model="m",reason="invalid"}`]; v != float64(len(cases)) {
		t.Fatalf("invalid rejections %v, want %d", v, len(cases))
	}
}

func TestCloseRunsEverythingQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		set := metrics.NewSet()
		g := newGate()
		b := mustNew(t, Config{MaxBatchSize: 4, QueueCapacity: 16}, g, set)
		eb, db := submitAsync(b, &Request{}, "block")
		synctest.Wait() // running, queue empty
		var errs []*error
		var dones []chan struct{}
		for i := range 16 {
			e, d := submitAsync(b, &Request{}, fmt.Sprint("q", i))
			errs, dones = append(errs, e), append(dones, d)
		}
		synctest.Wait()
		if d := b.QueueDepth(); d != 16 {
			t.Fatalf("queue depth %d, want 16", d)
		}
		err := b.Submit(&Request{Rows: 1})
		if !errors.Is(err, ErrQueueFull) || err.Error() != "batcher: queue full (capacity 16): raise queue_capacity or add replicas" {
			t.Fatalf("17th request: %v", err)
		}
		closed := make(chan error)
		go func() { closed <- b.Close(context.Background()) }()
		synctest.Wait()
		if err := b.Submit(&Request{Rows: 1}); !errors.Is(err, ErrClosed) {
			t.Fatalf("Submit after Close: %v", err)
		}
		close(g.release)
		if err := <-closed; err != nil {
			t.Fatalf("Close: %v", err)
		}
		<-db
		if *eb != nil {
			t.Fatal(*eb)
		}
		for i, d := range dones {
			<-d
			if *errs[i] != nil {
				t.Fatalf("queued request %d: %v", i, *errs[i])
			}
			if !g.saw(fmt.Sprint("q", i)) {
				t.Fatalf("queued request %d never ran", i)
			}
		}
		if err := b.Close(t.Context()); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		m := metricValues(t, set)
		for name, want := range map[string]float64{
			`inferd_batcher_queue_depth{model="m"}`:                                           0,
			`inferd_batcher_requests_rejected_total{model="m",reason="queue_full"}`:           1,
			`inferd_batcher_requests_rejected_total{model="m",reason="closed"}`:               1,
			`inferd_batcher_batches_total{model="m"}`:                                         5,
			`inferd_batcher_batch_size_count{model="m"}`:                                      5,
			`inferd_batcher_batch_size_sum{model="m"}`:                                        17,
			`inferd_batcher_queue_wait_seconds_count{model="m"}`:                              17,
			`inferd_batcher_requests_rejected_total{model="m",reason="deadline"}`:             0,
			`inferd_batcher_requests_rejected_total{model="m",reason="cannot_meet_deadline"}`: 0,
		} {
			if m[name] != want {
				t.Errorf("%s = %v, want %v", name, m[name], want)
			}
		}
	})
	// synctest.Test returning means every goroutine of the batcher exited.
}

func TestCloseContextEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGate()
		b := mustNew(t, Config{MaxBatchSize: 1}, g, nil)
		eb, db := submitAsync(b, &Request{}, "block")
		synctest.Wait()
		eq, dq := submitAsync(b, &Request{}, "queued")
		synctest.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 10*ms)
		defer cancel()
		start := time.Now()
		err := b.Close(ctx)
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != 10*ms {
			t.Fatalf("Close = %v after %v", err, time.Since(start))
		}
		if !strings.Contains(err.Error(), "1 queued requests failed, 1 batches still running") {
			t.Fatalf("Close error %q does not say a batch is running", err)
		}
		<-dq
		if !errors.Is(*eq, ErrClosed) || g.saw("queued") {
			t.Fatalf("queued request: %v (ran: %v)", *eq, g.saw("queued"))
		}
		close(g.release) // the running batch still completes
		<-db
		if *eb != nil {
			t.Fatal(*eb)
		}
		if err := b.Close(context.Background()); err != nil {
			t.Fatalf("Close after the runner returned: %v", err)
		}
	})
}

// TestNoGoroutinesLeft checks on the real scheduler that Close leaves no
// goroutine behind.
func TestNoGoroutinesLeft(t *testing.T) {
	before := runtime.NumGoroutine()
	for _, cfg := range []Config{{InFlight: 4}, {LatencyTarget: ms, MaxDelay: ms, InFlight: 2}} {
		b := mustNew(t, cfg, RunnerFunc(nop), nil)
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 50 {
					b.Submit(&Request{Rows: 1})
				}
			})
		}
		wg.Wait()
		if err := b.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines before, %d after Close:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		runtime.Gosched()
	}
}

func TestMetrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		set := metrics.NewSet()
		g := newGate()
		b := mustNew(t, Config{MaxBatchSize: 8}, RunnerFunc(func(bt *Batch) error {
			g.Run(bt)
			time.Sleep(3 * ms)
			return nil
		}), set)
		_, d0 := submitAsync(b, &Request{Rows: 1}, "block")
		synctest.Wait()
		_, d1 := submitAsync(b, &Request{Rows: 3}, "a")
		_, d2 := submitAsync(b, &Request{Rows: 2}, "b")
		synctest.Wait()
		m := metricValues(t, set)
		if m[`inferd_batcher_queue_depth{model="m"}`] != 2 || m[`inferd_batcher_batches_in_flight{model="m"}`] != 1 {
			t.Fatalf("while blocked: depth %v in flight %v", m[`inferd_batcher_queue_depth{model="m"}`], m[`inferd_batcher_batches_in_flight{model="m"}`])
		}
		time.Sleep(2 * ms) // the queued pair waits 2ms more + 3ms run
		close(g.release)
		<-d0
		<-d1
		<-d2
		b.Close(t.Context())
		m = metricValues(t, set)
		for name, want := range map[string]float64{
			`inferd_batcher_queue_depth{model="m"}`:                           0,
			`inferd_batcher_batches_in_flight{model="m"}`:                     0,
			`inferd_batcher_batches_total{model="m"}`:                         2,
			`inferd_batcher_batch_size_bucket{model="m",le="1"}`:              1,
			`inferd_batcher_batch_size_bucket{model="m",le="4"}`:              1,
			`inferd_batcher_batch_size_bucket{model="m",le="8"}`:              2,
			`inferd_batcher_batch_size_sum{model="m"}`:                        6,
			`inferd_batcher_batch_padding_rows_total{model="m"}`:              3, // 5 rows padded to 8
			`inferd_batcher_run_seconds_count{model="m"}`:                     2,
			`inferd_batcher_run_seconds_sum{model="m"}`:                       0.008, // 2×3ms + 2ms blocked
			`inferd_batcher_queue_wait_seconds_count{model="m"}`:              3,
			`inferd_batcher_queue_wait_seconds_bucket{model="m",le="0.0001"}`: 1,
			`inferd_batcher_queue_wait_seconds_bucket{model="m",le="0.005"}`:  3,
		} {
			if got := m[name]; got < want-1e-9 || got > want+1e-9 {
				t.Errorf("%s = %v, want %v", name, got, want)
			}
		}
	})
}

// TestSharedMetricsSet checks two batchers with the same name in one set (a
// model reload) share metrics instead of panicking, and gauges stay right.
func TestSharedMetricsSet(t *testing.T) {
	set := metrics.NewSet()
	b1 := mustNew(t, Config{}, RunnerFunc(nop), set)
	b2 := mustNew(t, Config{}, RunnerFunc(nop), set)
	b1.Submit(&Request{Rows: 1})
	b2.Submit(&Request{Rows: 1})
	b1.Close(t.Context())
	b2.Close(t.Context())
	m := metricValues(t, set)
	if m[`inferd_batcher_batches_total{model="m"}`] != 2 || m[`inferd_batcher_queue_depth{model="m"}`] != 0 {
		t.Fatalf("shared metrics: %v", m)
	}
}

// TestRunnerMangledBatch: a Runner that breaks the rules and empties the
// Batch still cannot lose a request.
func TestRunnerMangledBatch(t *testing.T) {
	b := mustNew(t, Config{}, RunnerFunc(func(bt *Batch) error {
		bt.Requests, bt.Rows, bt.Bucket = nil, 0, 0
		return nil
	}), nil)
	for range 10 {
		if err := b.Submit(&Request{Rows: 2}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestDoubleSubmit: submitting a Request again while it is still queued is a
// caller bug reported as a bad request, not a hang.
func TestDoubleSubmit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, g, d := blockRunner(t, Config{}, nil)
		req := &Request{}
		_, d2 := submitAsync(b, req, "twice")
		synctest.Wait()
		if err := b.Submit(req); !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "already being submitted") {
			t.Fatalf("second Submit: %v", err)
		}
		close(g.release)
		<-d
		<-d2
		if err := b.Submit(req); err != nil { // done: reusable
			t.Fatalf("reuse after Submit returned: %v", err)
		}
		b.Close(t.Context())
	})
}

// TestCloseCancelledIdle: a Close whose context is already over, on an idle
// batcher, loses nothing and so succeeds.
func TestCloseCancelledIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := mustNew(t, Config{}, RunnerFunc(nop), nil)
		if err := b.Submit(&Request{Rows: 1}); err != nil {
			t.Fatal(err)
		}
		// Submit returns when its request is answered, a moment before the
		// worker reports the batch finished: wait until it is really idle.
		synctest.Wait()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := b.Close(ctx); err != nil {
			t.Fatalf("Close: %v", err)
		}
	})
}

// Package batcher is inferd's per-model dynamic batcher. It sits between the
// HTTP handlers and the ONNX Runtime sessions and knows nothing of either:
// callers Submit requests carrying some rows and an opaque payload, and a
// Runner is handed batches of requests to run together.
//
// # Policy
//
// Requests wait in one FIFO queue per priority level (0 is highest). When a
// runner is free, a batch is filled from the highest level first, FIFO within
// a level, adding whole requests while they fit in Config.MaxBatchSize rows.
// A request is never split: if the next one does not fit, the batch is closed
// and that request leads the next batch. The batch is padded up to the
// smallest Config.Buckets size the device runs.
//
// A batch is closed (handed to a runner) as soon as a runner is free and any
// of these holds:
//   - it is full: MaxBatchSize rows, or the next request does not fit;
//   - MaxDelay is 0 and the adaptive window is off (the default window): at
//     once, unless closed-loop clients just answered are about to come back
//     and waiting for them pays; with several runners a batch then takes
//     a fair share of those clients (see echo.go);
//   - the delay window expired: MaxDelay has passed since the oldest queued
//     request arrived;
//   - waiting longer would make the request with the earliest deadline miss
//     it: now + t(bucket) + margin >= deadline, with t the fitted cost model;
//   - the adaptive window (Config.LatencyTarget) says so; see adaptive.go.
//   - the batcher is closing (everything queued runs without waiting).
//
// # Admission
//
// Submit admits a request only if the batcher predicts it will be answered
// within its deadline budget: the rows queued ahead of it at its priority or
// higher at the throughput measured from completed batches, plus the batches
// running and its own run (see admission.go). Otherwise it fails at once,
// never queued: ErrCannotMeetDeadline if it could not make it even if it ran
// next, ErrOverloaded if the queue ahead is the reason. Both carry a
// RetryAfter. Before any run time is known (no batch has finished and
// Config.BucketRunTimes is empty) only the cap applies: QueueCapacity
// requests, and beyond it ErrQueueFull. Admit answers the same question
// without queueing, for a server to ask before it reads a body. A request
// whose deadline passes while queued anyway fails with ErrDeadlineExceeded
// and never runs.
//
// # Goroutines and ownership
//
// Submit callers share one small mutex-protected intake slice with the
// scheduler; that is the only lock. One scheduler goroutine per batcher owns
// the queues, the deadline heap, the timer and the cost model; it drains the
// intake in bulk, expires, admits and dispatches. Config.InFlight worker
// goroutines call the Runner, complete the batch's requests and hand the batch
// back to the scheduler, which gathers the next batch while they run.
package batcher

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/VictoriaMetrics/metrics"
)

// Request is one caller's unit of work: Rows rows that must run in the same
// batch. A caller may reuse (pool) a Request once Submit has returned; the
// batcher keeps no reference to it after that.
type Request struct {
	// Rows is how many rows the request carries: 1..MaxBatchSize.
	Rows int
	// Priority is the priority level: 0 (highest) .. Priorities-1.
	Priority int
	// Timeout is the request's deadline budget from Submit. 0 means
	// Config.DefaultTimeout; larger values are clamped down to it; negative
	// values are rejected.
	Timeout time.Duration
	// Payload is the caller's data, typically a pointer; the batcher never
	// touches it.
	Payload any

	enqueued time.Time
	deadline time.Time
	enqNs    int64         // enqueued, in ns since the batcher's epoch
	dlNs     int64         // deadline, in ns since the batcher's epoch
	done     chan struct{} // created on first Submit, reused afterwards
	err      error         // result, written before done is signalled
	seq      uint64        // position in its priority ring
	hidx     int32         // index in the deadline heap
	busy     uint32        // 1 while inside Submit (atomic), to catch reuse
}

// Deadline returns when the request's budget ends. Valid once Submit has
// been called.
func (r *Request) Deadline() time.Time { return r.deadline }

// Enqueued returns when Submit accepted the request.
func (r *Request) Enqueued() time.Time { return r.enqueued }

// Batch is what a Runner runs: requests in run order, whose rows the Runner
// lays out at consecutive offsets (request i starts at the sum of the Rows of
// requests 0..i-1), padded to Bucket rows. The batcher reuses Batch values:
// a Runner must not change one nor keep it after Run returns.
type Batch struct {
	// Requests are the batch's requests in run order.
	Requests []*Request
	// Rows is the sum of the Requests' Rows.
	Rows int
	// Bucket is the padded size the device runs (>= Rows).
	Bucket int

	buf       []*Request // Requests' backing array, restored after each run
	own       []*Request // the batcher's copy of Requests: a Runner cannot lose one
	bucketIdx int
	startNs   int64 // dispatch time, ns since epoch
	estNs     int64 // predicted run time
	endNs     int64 // predicted end for admission, ns since epoch
	durNs     int64 // measured run time
	doneNs    int64 // when Run returned, ns since epoch
	failed    bool  // Run returned an error or panicked
	slot      int   // index in scheduler.running
}

// Runner runs one batch. A returned error fails exactly that batch's
// requests (wrapped as ErrRunFailed, keeping errors.Is/As to the returned
// error). A panic is recovered and fails the batch with ErrRunnerPanic; the
// batcher keeps going. Run may be called from up to Config.InFlight
// goroutines at once.
type Runner interface {
	Run(b *Batch) error
}

// RunnerFunc adapts a function to Runner.
type RunnerFunc func(b *Batch) error

// Run calls f(b).
func (f RunnerFunc) Run(b *Batch) error { return f(b) }

var _ Runner = RunnerFunc(nil)

// Batcher batches the requests of one model. Create it with New, Submit from
// any number of goroutines, and Close it once.
type Batcher struct {
	// Read-only after New.
	name      string
	cfg       Config
	runner    Runner
	epoch     time.Time
	m         *batcherMetrics
	errFull   error
	bucketIdx []int         // rows -> index of the smallest bucket >= rows
	wake      chan struct{} // something for the scheduler; capacity 1
	work      chan *Batch   // scheduler -> workers; capacity InFlight
	schedDone chan struct{} // scheduler goroutine exited
	stopped   chan struct{} // scheduler and workers exited
	closeOnce sync.Once
	workers   sync.WaitGroup
	drained   atomic.Bool // the scheduler ran the queue dry and stopped
	closing   atomic.Bool // Close was called (closed, for Admit's lock-free read)
	adm       admission   // what admission predicts from; see admission.go
	// Set by the scheduler when Close's context ended, before schedDone.
	abortFailed, abortRunning int

	_ [64]byte // keep the intake's cache line apart from the read-only fields

	// Shared with Submit callers and workers, guarded by mu. The scheduler
	// takes all of it in one critical section per wake-up.
	mu       sync.Mutex
	closed   bool         // Close was called: Submit fails with ErrClosed
	aborted  bool         // Close's context ended: fail what is queued
	intake   []*Request   // cap QueueCapacity; swapped out whole by the scheduler
	returned []*Batch     // batches workers have finished; cap InFlight
	depth    atomic.Int64 // accepted and not yet dispatched or failed
	_        [64]byte
}

// New creates the batcher for model name and starts its goroutines. cfg's
// zero fields take their defaults; an invalid field is reported by name.
// Metrics are registered on set (a private set if nil) with the label
// model="name".
func New(name string, cfg Config, r Runner, set *metrics.Set) (*Batcher, error) {
	if name == "" || strings.ContainsFunc(name, unicode.IsControl) {
		return nil, fmt.Errorf("batcher: name %q: must be non-empty without control characters", name)
	}
	if r == nil {
		return nil, errors.New("batcher: runner: must not be nil")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if set == nil {
		set = metrics.NewSet()
	}
	b := &Batcher{
		name:      name,
		cfg:       cfg,
		runner:    r,
		epoch:     time.Now(),
		m:         newMetrics(set, name, cfg.MaxBatchSize),
		errFull:   newQueueFull(cfg.QueueCapacity, 0),
		wake:      make(chan struct{}, 1),
		work:      make(chan *Batch, cfg.InFlight),
		schedDone: make(chan struct{}),
		stopped:   make(chan struct{}),
		intake:    make([]*Request, 0, cfg.QueueCapacity),
		returned:  make([]*Batch, 0, cfg.InFlight),
		bucketIdx: make([]int, cfg.MaxBatchSize+1),
		adm: admission{
			queued: make([]atomic.Int64, cfg.Priorities),
			runNs:  make([]atomic.Int64, len(cfg.Buckets)),
		},
	}
	for n, i := 0, 0; n <= cfg.MaxBatchSize; n++ {
		for cfg.Buckets[i] < n {
			i++
		}
		b.bucketIdx[n] = i
	}
	s := newScheduler(b)
	b.workers.Add(cfg.InFlight)
	for range cfg.InFlight {
		go b.worker()
	}
	go s.loop()
	return b, nil
}

// Config returns the configuration in effect, defaults filled in.
func (b *Batcher) Config() Config {
	c := b.cfg
	c.Buckets = slices.Clone(c.Buckets)
	c.BucketRunTimes = slices.Clone(c.BucketRunTimes)
	return c
}

// QueueDepth returns how many requests are queued (accepted, not yet handed
// to a runner).
func (b *Batcher) QueueDepth() int { return int(b.depth.Load()) }

// Submit queues req and blocks until it is done: run (nil, or the batch's
// failure), rejected at once (ErrBadRequest, ErrClosed,
// ErrCannotMeetDeadline, ErrOverloaded, ErrQueueFull: see Admit and
// admission.go), shed by the adaptive window (ErrCannotMeetDeadline) or
// expired in the queue (ErrDeadlineExceeded). All errors are *httperr.Error
// (see the sentinels in errors.go). req must not be submitted again, nor
// changed, until Submit returns; after that the batcher holds no reference
// to it.
func (b *Batcher) Submit(req *Request) error {
	if req == nil {
		b.m.rejected[reasonInvalid].Inc()
		return badRequest("nil request")
	}
	if req.Rows < 1 || req.Rows > b.cfg.MaxBatchSize || req.Priority < 0 || req.Priority >= b.cfg.Priorities || req.Timeout < 0 {
		return b.invalid(req)
	}
	if !atomic.CompareAndSwapUint32(&req.busy, 0, 1) {
		b.m.rejected[reasonInvalid].Inc()
		return badRequest("request is already being submitted")
	}
	err := b.submit(req)
	atomic.StoreUint32(&req.busy, 0)
	return err
}

func (b *Batcher) submit(req *Request) error {
	timeout := b.budget(req.Timeout)
	now := time.Now()
	req.enqueued = now
	req.deadline = now.Add(timeout)
	req.enqNs = int64(now.Sub(b.epoch))
	req.dlNs = req.enqNs + int64(timeout)
	req.err = nil
	if req.done == nil {
		req.done = make(chan struct{}, 1)
	}

	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		b.m.rejected[reasonClosed].Inc()
		return ErrClosed
	}
	if v := b.check(req.Rows, req.Priority, timeout, req.enqNs); !v.admit {
		b.mu.Unlock()
		return b.reject(v, req.Rows, timeout)
	}
	b.depth.Add(1)
	b.adm.queued[req.Priority].Add(int64(req.Rows))
	signal := len(b.intake) == 0
	b.intake = append(b.intake, req)
	b.mu.Unlock()
	if signal {
		b.signal()
	}

	<-req.done
	return req.err
}

// signal wakes the scheduler. Signals coalesce: the scheduler looks at
// everything pending each time it wakes.
func (b *Batcher) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

func (b *Batcher) invalid(req *Request) error {
	b.m.rejected[reasonInvalid].Inc()
	switch {
	case req.Rows < 1 || req.Rows > b.cfg.MaxBatchSize:
		return badRequest("rows %d out of range [1, %d]", req.Rows, b.cfg.MaxBatchSize)
	case req.Priority < 0 || req.Priority >= b.cfg.Priorities:
		return badRequest("priority %d out of range [0, %d]", req.Priority, b.cfg.Priorities-1)
	default:
		return badRequest("timeout %v: must be >= 0", req.Timeout)
	}
}

// Close stops intake (Submit then fails with ErrClosed) and then runs
// everything already queued, without waiting for delay windows, rather than
// failing it: those callers were accepted and are waiting, and a deploy or
// reload should not turn them into errors. Requests whose deadline passes
// meanwhile still fail with ErrDeadlineExceeded. Close returns nil once the
// queue is empty, every batch has finished and all the batcher's goroutines
// have exited.
//
// If ctx ends first, the requests still queued fail with ErrClosed and Close
// returns an error wrapping ctx.Err() that says how many batches are still in
// Runner.Run. Those cannot be interrupted; their worker goroutines exit when
// Run returns. Until then the Runner's resources (sessions) are in use: call
// Close again (say with context.Background()) to wait for them before
// freeing anything. Close may be called more than once and from several
// goroutines.
func (b *Batcher) Close(ctx context.Context) error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		b.closing.Store(true)
		b.mu.Unlock()
		b.signal()
	})
	select {
	case <-b.stopped:
		return nil
	case <-ctx.Done():
	}
	select {
	case <-b.stopped:
		return nil
	default:
	}
	b.mu.Lock()
	b.aborted = true
	b.mu.Unlock()
	b.signal()
	<-b.schedDone
	if b.drained.Load() { // it finished normally after all
		return nil
	}
	if b.abortFailed == 0 && b.abortRunning == 0 {
		<-b.stopped // nothing was lost and nothing is running: wait for the workers
		return nil
	}
	return fmt.Errorf("batcher: close %q: %w: %d queued requests failed, %d batches still running",
		b.name, ctx.Err(), b.abortFailed, b.abortRunning)
}

// worker runs batches until the work channel is closed.
func (b *Batcher) worker() {
	defer b.workers.Done()
	for bt := range b.work {
		b.m.inFlight.Inc()
		start := time.Now()
		err := b.call(bt)
		d := time.Since(start)
		b.m.inFlight.Dec()
		b.m.runSeconds.Update(d.Seconds())
		bt.durNs = int64(d)
		bt.doneNs = int64(start.Add(d).Sub(b.epoch))
		bt.failed = err != nil
		clear(bt.buf[:cap(bt.buf)])
		bt.Requests = bt.buf[:0]
		for i, r := range bt.own {
			bt.own[i] = nil
			r.err = err
			r.done <- struct{}{} // r belongs to its caller again from here
		}
		bt.own = bt.own[:0]
		b.mu.Lock()
		b.returned = append(b.returned, bt)
		b.mu.Unlock()
		b.signal()
	}
}

// call runs one batch, turning an error or a panic into the error its
// requests get: an instance of ErrRunFailed or ErrRunnerPanic.
func (b *Batcher) call(bt *Batch) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = runnerPanic(p)
		}
	}()
	if err := b.runner.Run(bt); err != nil {
		return runFailed(err)
	}
	return nil
}

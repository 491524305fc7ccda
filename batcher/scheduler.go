package batcher

import (
	"math"
	"runtime"
	"time"
)

const never = int64(math.MaxInt64)

// yieldBelow: while the cost model predicts the smallest batch runs faster
// than this, the scheduler yields once per wake-up (see loop).
const yieldBelow = 20 * time.Microsecond

// scheduler is the goroutine that owns a batcher's queues. Nothing here is
// touched by any other goroutine: requests arrive through the intake,
// batches go to workers over the work channel and come back through
// Batcher.returned.
type scheduler struct {
	b         *Batcher
	cfg       Config
	adaptive  bool
	greedy    bool         // the default window: MaxDelay 0, adaptive off
	noEcho    bool         // Config.greedy: no wait for returning clients
	echo      echo         // see echo.go
	levels    []ring       // one FIFO per priority level
	dl        deadlineHeap // every queued request, by deadline
	n         int          // queued requests
	rows      int          // queued rows
	spare     []*Request   // the other half of the double-buffered intake
	spareRet  []*Batch     // the other half of Batcher.returned
	free      []*Batch     // batches not running
	running   []*Batch     // batches running
	bucketIdx []int        // rows -> index of the smallest bucket >= rows
	cost      costModel
	pub       published // see admission.go
	run       []float64 // measured run time per bucket index, ns; 0 = unknown
	fill      []float64 // mean rows carried per bucket index
	spread    []float64 // mean absolute deviation of the rows carried
	jitter    []float64 // mean absolute deviation of the run time per bucket index, ns
	fewest    []int     // fewest rows carried
	maxRows   int       // the most rows a request has had
	ran       []int     // batches that ran per bucket index (0: run[i] is a seed or unknown)
	slack     float64   // >= 1: how much slower than measured the queue drained lately (admission.go)
	rate      rateEstimator
	timer     *time.Timer
	timerAt   int64 // when the timer fires, ns since epoch; never if stopped
	closeAt   int64 // when the waiting batch must close; never if none waits
	closing   bool
	gauge     int // queue depth change not yet added to the gauge
}

func newScheduler(b *Batcher) *scheduler {
	cfg := b.cfg
	s := &scheduler{
		b:         b,
		cfg:       cfg,
		adaptive:  cfg.LatencyTarget > 0,
		greedy:    cfg.LatencyTarget == 0 && cfg.MaxDelay == 0,
		noEcho:    cfg.greedy,
		levels:    make([]ring, cfg.Priorities),
		dl:        make(deadlineHeap, 0, cfg.QueueCapacity),
		spare:     make([]*Request, 0, cfg.QueueCapacity),
		bucketIdx: b.bucketIdx,
		cost:      newCostModel(cfg.Buckets),
		spareRet:  make([]*Batch, 0, cfg.InFlight),
		timerAt:   never,
		closeAt:   never,
	}
	s.timer = time.AfterFunc(time.Hour, b.signal)
	s.timer.Stop()
	size := 1
	for size < min(cfg.QueueCapacity, 256) {
		size *= 2
	}
	for i := range s.levels {
		s.levels[i] = newRing(size)
	}
	for range cfg.InFlight {
		buf := make([]*Request, 0, cfg.MaxBatchSize)
		s.free = append(s.free, &Batch{Requests: buf, buf: buf, own: make([]*Request, 0, cfg.MaxBatchSize)})
	}
	s.running = make([]*Batch, 0, cfg.InFlight)
	s.seedRunTimes()
	return s
}

// now is the scheduler's clock: ns since the batcher's epoch.
func (s *scheduler) now() int64 { return int64(time.Since(s.b.epoch)) }

// loop is the scheduler goroutine: it sleeps on the wake channel and, each
// time it wakes, brings everything up to date.
func (s *scheduler) loop() {
	b := s.b
	for range b.wake {
		if s.cost.est[0] < int64(yieldBelow) {
			// The runner is faster than the Go scheduler can feed it. The
			// submitter that woke us handed over its P while the others
			// that are already runnable have not pushed yet: let them, so
			// they share one batch instead of getting one each (measured:
			// ~1.2 rows per batch without this, ~50 with it, at 256
			// submitters and a no-op runner). It never happens with a
			// runner slower than yieldBelow, so it cannot delay a real
			// model's batches behind other goroutines.
			runtime.Gosched()
		}
		now := s.now()
		if s.timerAt <= now {
			s.timerAt = never // it has fired
		}
		b.mu.Lock()
		in, ret := b.intake, b.returned
		b.intake, b.returned = s.spare, s.spareRet
		closed, aborted := b.closed, b.aborted
		b.mu.Unlock()
		s.closing = closed
		// Arrivals first, so that the echo of a finished batch (echo.go)
		// can tell those that came before it finished from those after.
		for i, r := range in {
			in[i] = nil
			s.admit(r, now)
		}
		s.spare = in[:0]
		for i, bt := range ret {
			ret[i] = nil
			s.finish(bt)
		}
		s.spareRet = ret[:0]
		if aborted {
			s.stop()
			close(b.schedDone)
			b.workers.Wait() // only as long as Runner.Run calls still going
			close(b.stopped)
			return
		}
		s.expire(now)
		s.echo.tick(now)
		s.dispatch(now)
		s.flushGauge(now)
		if s.closing && s.n == 0 && len(s.running) == 0 {
			// The intake is closed and was drained: nothing can come.
			s.timer.Stop()
			close(b.work)
			b.workers.Wait()
			b.drained.Store(true)
			close(b.stopped)
			close(b.schedDone)
			return
		}
		s.arm(now)
	}
}

// admit queues one request taken from the intake, or fails it.
func (s *scheduler) admit(r *Request, now int64) {
	s.rate.rows += r.Rows
	s.maxRows = max(s.maxRows, r.Rows)
	if s.greedy {
		s.echo.arrived(r.enqNs, r.Rows)
	}
	s.gauge++
	if r.dlNs <= now {
		s.fail(r, ErrDeadlineExceeded, reasonDeadline)
		return
	}
	if s.adaptive && !s.closing && s.cost.warm() && s.cannotMeet(r, now) {
		s.fail(r, ErrCannotMeetDeadline, reasonCannotMeet)
		return
	}
	s.levels[r.Priority].push(r)
	s.dl.push(r)
	s.n++
	s.rows += r.Rows
}

// unqueue takes a queued request out of the queues.
func (s *scheduler) unqueue(r *Request) {
	s.levels[r.Priority].remove(r)
	s.dl.remove(int(r.hidx))
	s.n--
	s.rows -= r.Rows
}

// fail completes a request that will not run. It is no longer queued.
func (s *scheduler) fail(r *Request, err error, why reason) {
	s.gauge--
	s.b.depth.Add(-1)
	s.release(r)
	s.b.m.rejected[why].Inc()
	r.err = err
	r.done <- struct{}{}
}

// expire fails the queued requests whose deadline has passed.
func (s *scheduler) expire(now int64) {
	missed := 0
	for len(s.dl) > 0 && s.dl.min().dlNs <= now {
		r := s.dl.min()
		s.unqueue(r)
		s.fail(r, ErrDeadlineExceeded, reasonDeadline)
		missed++
	}
	if missed > 0 && !s.closing {
		s.missed(missed)
	}
}

// dispatch hands batches to free runners for as long as the close rules say
// so.
func (s *scheduler) dispatch(now int64) {
	s.closeAt = never
	for len(s.free) > 0 && s.n > 0 && s.shouldClose(now) {
		s.launch(now)
	}
}

// oldest returns the enqueue time of the oldest queued request.
func (s *scheduler) oldest() int64 {
	o := never
	for i := range s.levels {
		if r := s.levels[i].front(); r != nil {
			o = min(o, r.enqNs)
		}
	}
	return o
}

// shouldClose applies the close rules (see the package doc) to the batch a
// free runner would get now. When it says wait, s.closeAt is when to look
// again at the latest.
func (s *scheduler) shouldClose(now int64) bool {
	if s.closing || s.rows >= s.cfg.MaxBatchSize {
		// Closing, or full: the batch reaches MaxBatchSize or the next
		// request does not fit.
		return true
	}
	bi := s.bucketIdx[s.rows]
	t := s.cost.est[bi] + s.cost.margin()
	if s.greedy {
		if s.noEcho {
			return true
		}
		until := s.echoWait(now)
		if until == 0 {
			return true
		}
		closeAt := min(until, s.dl.min().dlNs-t)
		if now >= closeAt {
			return true
		}
		s.closeAt = closeAt
		return false
	}
	oldest := s.oldest()
	closeAt := s.dl.min().dlNs - t // earliest deadline
	if s.cfg.MaxDelay > 0 {
		closeAt = min(closeAt, oldest+int64(s.cfg.MaxDelay))
	}
	if s.adaptive {
		closeAt = min(closeAt, oldest+int64(s.cfg.LatencyTarget)-t)
		if now < closeAt && !s.arrivalsCanHelp(now, closeAt, s.rows, bi) {
			return true
		}
	}
	if now >= closeAt {
		return true
	}
	s.closeAt = closeAt
	return false
}

// plan fills bt with the requests the next batch would take: highest
// priority first, FIFO within a level, whole requests only, stopping at the
// first one that does not fit. The requests stay queued.
func (s *scheduler) plan(bt *Batch) {
	rows, max := 0, s.limit()
	for p := range s.levels {
		q := &s.levels[p]
		m := q.mask()
		for seq := q.head; seq < q.tail; seq++ {
			r := q.buf[seq&m]
			if r == nil {
				continue
			}
			if rows+r.Rows > max && rows > 0 {
				return
			}
			bt.Requests = append(bt.Requests, r)
			rows += r.Rows
			if rows == max {
				return
			}
		}
	}
}

// echoWait is until when a freed runner waits for returning clients, 0
// for not at all (echo.go).
func (s *scheduler) echoWait(now int64) int64 {
	share := s.limit()
	more, by := s.echo.expected(now)
	if more == 0 || s.rows >= share || by <= now {
		return 0
	}
	r, all := s.rows, min(s.rows+more, share)
	gain := float64(all)*float64(s.expect(s.bucketIdx[r]))/float64(r) - float64(s.expect(s.bucketIdx[all]))
	if float64(by-now) >= gain {
		return 0
	}
	return by
}

// limit is the most rows the next batch may take: MaxBatchSize, or, for
// closed-loop clients on several runners under the default window, a fair
// share of the rows in circulation, rounded up to its bucket (echo.go).
func (s *scheduler) limit() int {
	if !s.greedy || s.noEcho || s.cfg.InFlight == 1 || !s.echo.closedLoop() {
		return s.cfg.MaxBatchSize
	}
	n := min(s.echo.share(s.cfg.InFlight), s.cfg.MaxBatchSize)
	return s.cfg.Buckets[s.bucketIdx[n]]
}

// launch takes the next batch out of the queues and hands it to a worker.
func (s *scheduler) launch(now int64) {
	bt := s.free[len(s.free)-1]
	s.free = s.free[:len(s.free)-1]
	for {
		s.plan(bt)
		if !s.adaptive || !s.cost.warm() {
			break
		}
		s.trim(bt)
		if !s.dropLate(bt, now) {
			break
		}
		if s.n == 0 {
			s.free = append(s.free, bt)
			return
		}
	}
	rows := 0
	m := s.b.m
	for _, r := range bt.Requests {
		s.unqueue(r)
		rows += r.Rows
		m.queueWait.Update(float64(now-r.enqNs) / 1e9)
	}
	bt.Rows = rows
	bt.bucketIdx = s.bucketIdx[rows]
	bt.Bucket = s.cfg.Buckets[bt.bucketIdx]
	bt.startNs = now
	bt.estNs = s.cost.est[bt.bucketIdx]
	bt.endNs = now + s.expect(bt.bucketIdx)
	bt.own = append(bt.own, bt.Requests...)
	bt.slot = len(s.running)
	s.running = append(s.running, bt)
	s.pub.running = true
	for _, r := range bt.Requests {
		s.pub.released[r.Priority] += int64(r.Rows)
	}
	n := len(bt.Requests)
	s.gauge -= n
	s.b.depth.Add(int64(-n))
	m.batches.Inc()
	m.batchSize.Update(float64(rows))
	if pad := bt.Bucket - rows; pad > 0 {
		m.padding.Add(pad)
	}
	s.b.work <- bt // never blocks: at most InFlight batches exist
}

// dropLate is rule 4 of the adaptive window: it fails the planned requests
// that would finish after their deadline and reports whether it dropped
// any, in which case bt is emptied to be planned again.
func (s *scheduler) dropLate(bt *Batch, now int64) bool {
	rows := 0
	for _, r := range bt.Requests {
		rows += r.Rows
	}
	end := now + s.cost.est[s.bucketIdx[rows]]
	dropped := false
	for _, r := range bt.Requests {
		if r.dlNs < end {
			s.unqueue(r)
			s.fail(r, ErrCannotMeetDeadline, reasonCannotMeet)
			dropped = true
		}
	}
	if dropped {
		clear(bt.Requests)
		bt.Requests = bt.Requests[:0]
	}
	return dropped
}

// finish takes back a batch a worker has run.
func (s *scheduler) finish(bt *Batch) {
	last := len(s.running) - 1
	s.running[bt.slot] = s.running[last]
	s.running[bt.slot].slot = bt.slot
	s.running[last] = nil
	s.running = s.running[:last]
	s.free = append(s.free, bt)
	s.pub.running = true
	if s.greedy {
		running := 0
		for _, r := range s.running {
			running += r.Rows
		}
		s.echo.finished(bt.doneNs, bt.Rows, bt.durNs, s.rows, running)
	}
	if !bt.failed {
		s.cost.observe(s.cfg.Buckets[bt.bucketIdx], bt.durNs)
		s.observeRun(bt.bucketIdx, bt.Rows, bt.durNs)
	}
}

// arm points the timer at the next moment something must happen: the
// earliest deadline or the close time of a waiting batch. A timer that is
// already due earlier is left alone; firing early costs one extra step.
func (s *scheduler) arm(now int64) {
	want := s.closeAt
	if len(s.dl) > 0 {
		want = min(want, s.dl.min().dlNs)
	}
	if want == never || want >= s.timerAt {
		return
	}
	s.timerAt = want
	s.timer.Reset(time.Duration(max(want-now, 0)))
}

// flushGauge publishes the queue depth change of this step and the
// predicted wait.
func (s *scheduler) flushGauge(now int64) {
	s.publish(now)
	if s.gauge != 0 {
		s.b.m.queueDepth.Add(float64(s.gauge))
		s.gauge = 0
	}
}

// stop is the end of an aborted Close: everything still queued fails with
// ErrClosed. Running batches complete on their own; their workers exit
// afterwards.
func (s *scheduler) stop() {
	s.timer.Stop()
	s.b.abortFailed, s.b.abortRunning = s.n, len(s.running)
	for len(s.dl) > 0 {
		r := s.dl.min()
		s.unqueue(r)
		s.fail(r, ErrClosed, reasonClosed)
	}
	s.flushGauge(s.now())
	close(s.b.work)
}

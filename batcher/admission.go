package batcher

import (
	"math"
	"sync/atomic"
	"time"
)

// Admission by time.
//
// A request is admitted only if the batcher predicts it will be answered
// within its deadline budget B (its Timeout, or DefaultTimeout). For a
// request of n rows at priority p, at time now:
//
//	own  = t(bucket(n))          its own batch's run
//	Rmin = time until the first runner frees (0 while one is free)
//	busy = Σ remaining run time of the running batches / InFlight
//	Q    = rows accepted and not yet dispatched at priority p or higher
//	c    = min over buckets of t(bucket)/fill(bucket) / InFlight: device
//	       time per row at the most efficient bucket; 1/c is the throughput
//	next = Rmin + own                       if it ran next
//	wait = Rmin + t(bucket(Q + n + λ·Rmin)) if Q + n <= MaxBatchSize: it
//	                                        joins the next batch, with
//	                                        what arrives until it starts
//	     = max(next, busy + Q·c + 2σ + t(max))  otherwise
//
// t(bucket) is the measured run time of that bucket: an exponentially
// weighted mean of the batches that ran at it (seeded by
// Config.BucketRunTimes), or, for a bucket that never ran, the fitted cost
// model of adaptive.go; t(max) is that of MaxBatchSize. λ is the measured
// arrival rate (rows of any priority join its batch). fill(bucket) is the
// mean of the rows its batches carried (whole requests do not always fill a
// bucket): the bucket itself for a seed, and over a bucket's first 16
// batches, while the mean is unsure, a lower bound (the fewest seen, at most
// the bucket less the largest request plus one). σ = dev·√Q is the standard
// deviation of the time the Q rows take, from the spread of the rows
// batches carry (0 when every batch is full). With full batches queued
// ahead, busy + Q·c bounds when the request's batch starts (list scheduling
// starts a batch no later than the runners' mean backlog), and that batch,
// filled by later arrivals, runs at most t(max): so wait bounds when the
// request is answered, and an admitted request is answered within its
// deadline as long as the measured times hold. Then:
//
//   - next > B: ErrCannotMeetDeadline, RetryAfter next − B, or 0 if own > B
//     (no retry helps, a longer timeout does);
//   - wait > s·B: ErrOverloaded, RetryAfter wait − s·B (the time the
//     queue ahead needs, at the measured rate, to drain to where it would
//     fit), where s is Config.AdmissionShare (0.8: the rest of the budget
//     is margin for run times that rise after admission);
//   - QueueCapacity requests already waiting: ErrQueueFull.
//
// c is multiplied by 1 + 2·j, where j is the relative mean deviation of
// the best bucket's run times (an exponentially weighted mean of |run −
// t(bucket)|, over t(bucket)): batch times that vary, as on a CPU shared
// with other work, vary together for a while, so the margin is linear in
// the queue, not √Q. On a quiet device j is a few percent; admitting less
// costs no throughput, only the depth of the queue. c is also multiplied by
// a slack factor, 1 while the prediction holds: each request admitted that
// expires in the queue anyway (the queue drained slower than predicted:
// other work on the host's CPUs slows the handlers and the runtime, a noisy
// neighbour shares the GPU) multiplies the slack by 1.25, up to 4, and
// each batch that ran brings it back by 3% of its excess. A prediction the
// device does not keep is thereby corrected by the misses it causes,
// within a few batches.
//
// Before any run time is known (no batch finished, no seed), only the last
// check applies. The scheduler publishes everything the prediction reads
// through atomics, so Submit and Admit take no extra lock: Submit runs the
// check under the intake mutex it already holds, so concurrent Submits see
// each other's rows; Admit runs it without any lock.

// admission is the state the prediction reads. The scheduler writes it,
// except queued, which Submit increments and the scheduler decrements.
type admission struct {
	queued    []atomic.Int64 // rows accepted, not yet dispatched or failed, per priority
	runNs     []atomic.Int64 // t(bucket) per bucket index, ns; 0 while unknown
	perRow    atomic.Uint64  // c as float64 bits, ns per row; 0 while cold
	perRowDev atomic.Uint64  // dev as float64 bits: the queue's spread is dev·√Q ns
	lambda    atomic.Uint64  // λ as float64 bits, rows per ns
	// The running batches, written together under the sequence lock seq
	// (odd while the scheduler writes).
	seq     atomic.Uint64
	running atomic.Int64 // batches in Runner.Run
	endMin  atomic.Int64 // earliest predicted end of a running batch, ns since epoch
	endSum  atomic.Int64 // sum of the predicted ends of the running batches
}

// inFlight reads the running batches' state consistently: their number,
// the earliest predicted end and the sum of the predicted ends. After a few
// attempts that race with the scheduler it returns what it read; the
// caller clamps.
func (a *admission) inFlight() (n, endMin, endSum int64) {
	for range 4 {
		s := a.seq.Load()
		n, endMin, endSum = a.running.Load(), a.endMin.Load(), a.endSum.Load()
		if s&1 == 0 && a.seq.Load() == s {
			break
		}
	}
	return n, endMin, endSum
}

// prediction is what admission computes for one request, in ns from now.
type prediction struct {
	own, next, wait int64
	ok              bool // a run time is known (false: cold start)
}

// predict computes the prediction for a request of rows rows (1..MaxBatchSize)
// at priority prio, at now (ns since epoch).
func (b *Batcher) predict(rows, prio int, now int64) prediction {
	a := &b.adm
	c := math.Float64frombits(a.perRow.Load())
	if c == 0 {
		return prediction{}
	}
	var p prediction
	p.ok = true
	p.own = a.runNs[b.bucketIdx[rows]].Load()
	tmax := a.runNs[len(a.runNs)-1].Load()
	n, endMin, endSum := a.inFlight()
	rmin := int64(0)
	if n >= int64(b.cfg.InFlight) {
		rmin = min(max(0, endMin-now), tmax)
	}
	p.next = rmin + p.own
	p.wait = p.next
	q := int64(0)
	for i := 0; i <= prio; i++ {
		q += a.queued[i].Load()
	}
	q = max(q, 0)
	if q+int64(rows) <= int64(b.cfg.MaxBatchSize) {
		more := math.Float64frombits(a.lambda.Load()) * float64(rmin)
		batch := int(min(float64(q)+float64(rows)+more, float64(b.cfg.MaxBatchSize)))
		p.wait = rmin + a.runNs[b.bucketIdx[batch]].Load()
	} else {
		busy := min(max(0, endSum-n*now), n*tmax) / int64(b.cfg.InFlight)
		dev := math.Float64frombits(a.perRowDev.Load())
		queue := float64(q)*c + 2*dev*math.Sqrt(float64(q))
		p.wait = max(p.next, busy+int64(queue)+tmax)
	}
	return p
}

// verdict is admission's answer for one request.
type verdict struct {
	admit bool
	why   reason // when not admitted
	p     prediction
}

// check is admission for a valid request on an open batcher: time first,
// then the queue cap. Submit calls it holding b.mu, Admit without; neither
// allocates, and reject turns a refusal into its error outside the lock.
func (b *Batcher) check(rows, prio int, budget time.Duration, now int64) verdict {
	p := b.predict(rows, prio, now)
	switch {
	case p.ok && p.next > int64(budget):
		return verdict{why: reasonCannotMeet, p: p}
	case p.ok && p.wait > int64(float64(budget)*b.cfg.AdmissionShare):
		return verdict{why: reasonOverloaded, p: p}
	case b.depth.Load() >= int64(b.cfg.QueueCapacity):
		return verdict{why: reasonQueueFull, p: p}
	}
	return verdict{admit: true}
}

// reject counts a refusal and builds its error.
func (b *Batcher) reject(v verdict, rows int, budget time.Duration) error {
	b.m.rejected[v.why].Inc()
	p := v.p
	switch v.why {
	case reasonCannotMeet:
		return cannotMeet(time.Duration(p.next), time.Duration(p.own), budget)
	case reasonOverloaded:
		return overloaded(time.Duration(p.wait), time.Duration(float64(budget)*b.cfg.AdmissionShare), budget)
	}
	if !p.ok {
		return b.errFull
	}
	retry := p.next - p.own // the next dispatch
	if retry <= 0 {
		retry = int64(float64(rows) * math.Float64frombits(b.adm.perRow.Load()))
	}
	return newQueueFull(b.cfg.QueueCapacity, time.Duration(max(retry, 1)))
}

// budget is a request's deadline budget for its Timeout t.
func (b *Batcher) budget(t time.Duration) time.Duration {
	if t > 0 && t < b.cfg.DefaultTimeout {
		return t
	}
	return b.cfg.DefaultTimeout
}

// Admit answers what Submit would answer now for admitting a request of rows
// rows at priority with timeout (0: DefaultTimeout), without queueing or
// reserving anything: ErrBadRequest for invalid arguments, ErrClosed,
// ErrCannotMeetDeadline or ErrOverloaded from the time check, ErrQueueFull,
// or nil. It is cheap (some atomic loads, no lock, no allocation when it
// admits), for a server to call before it reads and decodes a body; Submit
// checks again, and may still reject when others got in between. A
// rejection is counted in inferd_batcher_requests_rejected_total as
// Submit's would be: a caller that gets an error must not then Submit the
// same request.
func (b *Batcher) Admit(rows, priority int, timeout time.Duration) error {
	if rows < 1 || rows > b.cfg.MaxBatchSize || priority < 0 || priority >= b.cfg.Priorities || timeout < 0 {
		return b.invalid(&Request{Rows: rows, Priority: priority, Timeout: timeout})
	}
	if b.closing.Load() {
		b.m.rejected[reasonClosed].Inc()
		return ErrClosed
	}
	budget := b.budget(timeout)
	if v := b.check(rows, priority, budget, int64(time.Since(b.epoch))); !v.admit {
		return b.reject(v, rows, budget)
	}
	return nil
}

// PredictedWait is admission's prediction, now, of the time from Submit to
// answer for a request of rows rows at priority, and whether a run time is
// known yet (false: cold start, and the duration is 0). rows and priority
// are clamped into range.
func (b *Batcher) PredictedWait(rows, priority int) (time.Duration, bool) {
	rows = min(max(rows, 1), b.cfg.MaxBatchSize)
	priority = min(max(priority, 0), b.cfg.Priorities-1)
	p := b.predict(rows, priority, int64(time.Since(b.epoch)))
	return time.Duration(p.wait), p.ok
}

// The scheduler's side.

// seedRunTimes builds the scheduler's per-bucket run times from the seeds.
func (s *scheduler) seedRunTimes() {
	s.run = make([]float64, len(s.cfg.Buckets))
	s.fill = make([]float64, len(s.cfg.Buckets))
	s.spread = make([]float64, len(s.cfg.Buckets))
	s.jitter = make([]float64, len(s.cfg.Buckets))
	s.fewest = make([]int, len(s.cfg.Buckets))
	s.ran = make([]int, len(s.cfg.Buckets))
	s.pub.runNs = make([]int64, len(s.cfg.Buckets))
	s.pub.released = make([]int64, s.cfg.Priorities)
	for i, d := range s.cfg.BucketRunTimes {
		s.run[i] = float64(d)
		s.fill[i] = float64(s.cfg.Buckets[i])
	}
	s.publishRunTimes()
}

const (
	// runDecay is the weight a bucket's measured run time gives a new
	// batch.
	runDecay = 1.0 / 8
	// fillDecay is the memory, in batches, of the mean rows a bucket's
	// batches carry, and of their spread.
	fillDecay = 64
	// fewKnown is how many batches a bucket's mean rows needs before it is
	// trusted; until then admission assumes the fewest rows seen.
	fewKnown = 16
)

// observeRun records a successful batch of rows rows that ran for d at
// bucket index bi.
func (s *scheduler) observeRun(bi, rows int, d int64) {
	if s.ran[bi] == 0 { // the first measurement replaces a seed
		s.run[bi], s.fill[bi], s.fewest[bi] = float64(max(d, 1)), float64(rows), rows
	} else {
		s.fewest[bi] = min(s.fewest[bi], rows)
		s.jitter[bi] += runDecay * (math.Abs(float64(d)-s.run[bi]) - s.jitter[bi])
		s.run[bi] += runDecay * (float64(d) - s.run[bi])
		// The rows carried vary from batch to batch: a plain mean of the
		// first fillDecay batches, then a slow exponential one.
		w := 1 / float64(min(s.ran[bi]+1, fillDecay))
		s.spread[bi] += w * (math.Abs(float64(rows)-s.fill[bi]) - s.spread[bi])
		s.fill[bi] += w * (float64(rows) - s.fill[bi])
	}
	s.ran[bi]++
	if s.slack > 1 {
		s.slack = 1 + (s.slack-1)*slackDecay
	}
	s.publishRunTimes()
}

const (
	// slackGrowth is what the slack is multiplied by when admitted
	// requests expire in the queue; slackMax bounds it; slackDecay is what
	// its excess over 1 keeps per batch run.
	slackGrowth, slackMax, slackDecay = 1.25, 4.0, 0.97
)

// missed records that n admitted requests expired in the queue: the queue
// drains slower than predicted, and the more of them, the more so.
func (s *scheduler) missed(n int) {
	s.slack = min(max(s.slack, 1)*math.Pow(slackGrowth, float64(min(n, 8))), slackMax)
	s.publishRunTimes()
}

// expect is the run time admission assumes for bucket index bi, in ns.
func (s *scheduler) expect(bi int) int64 {
	if v := s.run[bi]; v > 0 {
		return int64(v)
	}
	return s.cost.est[bi]
}

// published is what the scheduler last published for admission, so that it
// writes (and makes every submitter's cache miss) only on a change.
type published struct {
	runNs        []int64
	perRow, dev  float64
	lambda, wait float64
	running      bool    // the running batches changed since published
	released     []int64 // rows dispatched this step, per priority, not yet taken off queued
}

// changed reports whether v differs from old by more than 1/64 of it, and
// sets old to v if so.
func changed[T int64 | float64](old *T, v T) bool {
	d := v - *old
	if d < 0 {
		d = -d
	}
	if d*64 <= *old || d == 0 {
		return false
	}
	*old = v
	return true
}

// publishRunTimes publishes t(bucket) and c after the cost model or a
// measured run time changed.
func (s *scheduler) publishRunTimes() {
	a := &s.b.adm
	best, bi := 0.0, -1
	for i, v := range s.run {
		if t := max(1, s.expect(i)); changed(&s.pub.runNs[i], t) {
			a.runNs[i].Store(t)
		}
		if v > 0 {
			if per := v / s.rowsPerBatch(i); bi < 0 || per < best {
				best, bi = per, i
			}
		}
	}
	c, dev := best/float64(s.cfg.InFlight)*max(s.slack, 1), 0.0
	if bi >= 0 {
		// Run times that vary from batch to batch (a host's other work
		// comes and goes, and stays a while when it comes) make the queue
		// drain at a rate that varies as much, for all of it at once: c
		// grows by twice the relative deviation of the bucket's runs.
		if s.ran[bi] > 1 {
			c *= 1 + 2*min(s.jitter[bi]/s.run[bi], 1)
		}
		c = max(c, 1e-3) // 0 means cold
		// The number of batches that clear Q rows carrying fill ± σ rows
		// each has a standard deviation of σ·√(Q/fill³) batches, that is
		// c·σ·√(Q/fill) of time: dev·√Q, with σ ≈ 1.25 × the mean
		// absolute deviation.
		dev = c * 1.25 * s.spread[bi] / math.Sqrt(s.rowsPerBatch(bi))
	}
	if changed(&s.pub.perRow, c) {
		a.perRow.Store(math.Float64bits(c))
		s.b.m.throughput.Set(1e9 / c)
	}
	if changed(&s.pub.dev, dev) {
		a.perRowDev.Store(math.Float64bits(dev))
	}
}

// rowsPerBatch is the rows admission assumes a batch at bucket index bi
// carries. Until its mean has fewKnown batches behind it, that is a lower
// bound: the fewest seen, and no more than a batch cut short by the largest
// request seen (a batch closes only when the next request does not fit).
func (s *scheduler) rowsPerBatch(bi int) float64 {
	if n := s.ran[bi]; n > 0 && n < fewKnown {
		return float64(max(1, min(s.fewest[bi], s.cfg.Buckets[bi]-s.maxRows+1)))
	}
	return s.fill[bi]
}

// publish publishes, once per step, what changed in it: the running
// batches, then (so that a concurrent admission counts them twice rather
// than not at all) the rows that left the queue for them, the arrival rate
// and the predicted-wait gauge.
func (s *scheduler) publish(now int64) {
	a := &s.b.adm
	if s.pub.running {
		s.pub.running = false
		s.publishRunning()
	}
	for p, n := range s.pub.released {
		if n != 0 {
			a.queued[p].Add(-n)
			s.pub.released[p] = 0
		}
	}
	if changed(&s.pub.lambda, s.rate.rate(now)) {
		a.lambda.Store(math.Float64bits(s.pub.lambda))
	}
	if p := s.b.predict(1, s.cfg.Priorities-1, now); p.ok && changed(&s.pub.wait, float64(p.wait)/1e9) {
		s.b.m.wait.Set(s.pub.wait)
	}
}

// publishRunning publishes the predicted ends of the running batches.
func (s *scheduler) publishRunning() {
	a := &s.b.adm
	lo, sum := never, int64(0)
	for _, bt := range s.running {
		lo = min(lo, bt.endNs)
		sum += bt.endNs
	}
	a.seq.Add(1)
	a.endMin.Store(lo)
	a.endSum.Store(sum)
	a.running.Store(int64(len(s.running)))
	a.seq.Add(1)
}

// release takes a failed request's rows out of admission's queue count.
func (s *scheduler) release(r *Request) {
	s.b.adm.queued[r.Priority].Add(int64(-r.Rows))
}

package batcher

import (
	"math"
	"time"
)

// The adaptive window (Config.LatencyTarget > 0).
//
// A cost model t(n) = a + b·n predicts how long the Runner takes for a batch
// padded to n rows. It is fitted by exponentially weighted least squares over
// the (bucket, duration) pairs of the batches that actually ran successfully.
// With the model the scheduler, whenever a runner is free:
//
//  1. Closes the batch at the latest moment its oldest request can still
//     finish within the target: now + t(bucket) + margin >= oldest.enqueued +
//     LatencyTarget (and never later than MaxDelay, if set, or than the
//     earliest deadline allows).
//  2. Does not wait at all when more arrivals cannot help. Arrivals are free
//     only while they fill the padding of the bucket the batch already pays
//     for; so it waits only if (a) the batch has padding room, (b) at the
//     measured arrival rate λ the room fills before the close time of rule
//     1, and (c) fewer rows are waiting than arrive during one run (R <
//     λ·t(bucket)), which is when delaying the R waiting rows costs less
//     latency than it saves the newcomers who would otherwise wait a whole
//     extra run. Otherwise the batch goes at once, so at low load the
//     adaptive window behaves like MaxDelay = 0.
//  3. Trims the batch to the prefix with the most rows per second of device
//     time, rows/t(bucket(rows)): 33 queued rows with buckets 32 and 64 run
//     as 32 now rather than 33 padded to 64. The rest go in the next batch.
//  4. Drops (ErrCannotMeetDeadline) any request of the batch it is about to
//     run that would finish after its own deadline: now + t(bucket) >
//     deadline (Clockwork). A late answer is useless and the device time is
//     better spent on requests that can still make it.
//  5. Sheds a new request at admission (ErrCannotMeetDeadline) if even run
//     next it would finish after its deadline: now + time until a runner
//     frees + full batches queued ahead of it at its priority or higher ×
//     t(max)/InFlight + t(bucket(its rows)) > deadline. Admission by time
//     (admission.go, every mode) rejects most such requests in Submit
//     already; this catches the rest once they reach the scheduler.
//
// Rules 3 to 5 wait until the model has seen warmSamples batches; before that
// the prior below only makes rule 1 close batches early.

const (
	// costDecay is the weight kept by old samples per new one (a memory of
	// about 50 batches).
	costDecay = 0.98
	// warmSamples is how many batches the model needs before it is trusted
	// to trim, drop or shed.
	warmSamples = 4
	// priorFixed and priorPerRow shape the model before any batch ran.
	priorFixed  = float64(time.Millisecond)
	priorPerRow = float64(100 * time.Microsecond)
	// baseMargin is added to twice the mean absolute prediction error as
	// the safety margin of rule 1 (timer and scheduling slack).
	baseMargin = 200 * time.Microsecond
	// rateInterval is the shortest interval the arrival rate is measured
	// over; rateTau is the time constant of its exponential smoothing.
	rateInterval = 2 * time.Millisecond
	rateTau      = 50 * time.Millisecond
)

// costModel is the exponentially weighted least-squares fit of batch run
// time against bucket size. Durations are in nanoseconds.
type costModel struct {
	sw, sx, sy, sxx, sxy float64 // decayed sums of 1, n, t, n², n·t
	samples              int
	a, b                 float64 // fitted t(n) = a + b·n
	mad                  float64 // decayed mean absolute prediction error
	buckets              []int
	est                  []int64 // t(bucket) per bucket index
}

func newCostModel(buckets []int) costModel {
	m := costModel{buckets: buckets, est: make([]int64, len(buckets)), a: priorFixed, b: priorPerRow}
	m.fill()
	return m
}

// warm reports whether the model has seen enough batches to be trusted.
func (m *costModel) warm() bool { return m.samples >= warmSamples }

// predict returns t(n) in nanoseconds.
func (m *costModel) predict(n int) float64 { return m.a + m.b*float64(n) }

// margin is the safety margin for closing batches.
func (m *costModel) margin() int64 { return int64(baseMargin) + int64(2*m.mad) }

// observe adds one batch of bucket n that ran for d nanoseconds.
func (m *costModel) observe(n int, d int64) {
	x, y := float64(n), float64(d)
	if m.samples > 0 {
		m.mad = costDecay*m.mad + (1-costDecay)*math.Abs(y-m.predict(n))
	}
	m.samples++
	m.sw = costDecay*m.sw + 1
	m.sx = costDecay*m.sx + x
	m.sy = costDecay*m.sy + y
	m.sxx = costDecay*m.sxx + x*x
	m.sxy = costDecay*m.sxy + x*y
	mx, my := m.sx/m.sw, m.sy/m.sw
	if vx := m.sxx/m.sw - mx*mx; vx >= 0.1 {
		// Least squares; costs never fall with size.
		m.b = max(0, (m.sxy/m.sw-mx*my)/vx)
		m.a = my - m.b*mx
		if m.a < 0 {
			m.a, m.b = 0, my/mx
		}
	} else {
		// Only one size seen so far: keep the prior's shape through the
		// observed point.
		s := my / (priorFixed + priorPerRow*mx)
		m.a, m.b = s*priorFixed, s*priorPerRow
	}
	m.fill()
}

func (m *costModel) fill() {
	for i, n := range m.buckets {
		m.est[i] = int64(m.predict(n))
	}
}

// rateEstimator measures the arrival rate in rows per nanosecond.
type rateEstimator struct {
	last  int64 // time of the last update, ns since epoch
	rows  int   // rows arrived since last
	perNs float64
}

// rate returns the smoothed arrival rate at now.
func (e *rateEstimator) rate(now int64) float64 {
	if el := now - e.last; el >= int64(rateInterval) {
		inst := float64(e.rows) / float64(el)
		w := 1 - math.Exp(-float64(el)/float64(rateTau))
		e.perNs += w * (inst - e.perNs)
		e.rows, e.last = 0, now
	}
	return e.perNs
}

// arrivalsCanHelp is rule 2: whether waiting (until closeAt at the latest)
// for more requests can make the batch of rows rows (bucket index bi)
// better.
func (s *scheduler) arrivalsCanHelp(now, closeAt int64, rows, bi int) bool {
	room := s.cfg.Buckets[bi] - rows
	if room <= 0 {
		return false
	}
	lambda := s.rate.rate(now)
	if lambda <= 0 {
		return false
	}
	if float64(now)+float64(room)/lambda > float64(closeAt) {
		return false
	}
	return float64(rows) < lambda*float64(s.cost.est[bi])
}

// trim is rule 3: it cuts the planned batch to its most efficient prefix.
func (s *scheduler) trim(bt *Batch) {
	best, bestEff, rows := len(bt.Requests), 0.0, 0
	for i, r := range bt.Requests {
		rows += r.Rows
		eff := float64(rows) / float64(s.cost.est[s.bucketIdx[rows]])
		if eff >= bestEff { // ties go to the larger batch
			best, bestEff = i+1, eff
		}
	}
	if best < len(bt.Requests) {
		clear(bt.Requests[best:])
		bt.Requests = bt.Requests[:best]
	}
}

// cannotMeet is rule 5 for a request being admitted.
func (s *scheduler) cannotMeet(r *Request, now int64) bool {
	ahead := 0
	for p := 0; p <= r.Priority; p++ {
		ahead += s.levels[p].rows
	}
	maxIdx := len(s.cfg.Buckets) - 1
	start := now + s.freeIn(now) + int64(ahead/s.cfg.MaxBatchSize)*s.cost.est[maxIdx]/int64(s.cfg.InFlight)
	return start+s.cost.est[s.bucketIdx[r.Rows]] > r.dlNs
}

// freeIn predicts how long until a runner is free.
func (s *scheduler) freeIn(now int64) int64 {
	if len(s.free) > 0 {
		return 0
	}
	soonest := int64(math.MaxInt64)
	for _, bt := range s.running {
		soonest = min(soonest, bt.startNs+bt.estNs)
	}
	return max(0, soonest-now)
}

package batcher

import (
	"math"
	"time"
)

// The default window (MaxDelay 0, LatencyTarget 0): waiting for returning
// clients.
//
// Closed-loop clients send their next request as soon as the last one is
// answered. Running whatever is queued the moment a runner frees (greedy)
// then starts a batch with the first of them to come back, and the others,
// a fraction of a millisecond behind, wait a whole batch: batches alternate
// small and large, and 8 clients get 0.86 of the device's throughput.
//
// So the scheduler measures how much of a finished batch comes back right
// after it (its echo) and, when that is most of it, lets a freed runner wait
// for those rows, briefly:
//
//   - The echo window of a batch of n rows that ran for d and finished at f
//     is [f, f+d/4). The echo is the rows that arrived in it less those
//     that arrived in [f−d/4, f) (the traffic that would have come anyway:
//     with open-loop arrivals both are the same in expectation), over n,
//     clipped to [0, 1]; ρ is its mean (plain over the first samples, then
//     exponentially weighted). Batches that finish within one window (on
//     several runners) share it.
//   - With ρ ≥ 0.5, a freed runner with R rows queued expects E more (ρ·n
//     less those back already) by b = f + 1.5 × the mean delay of an echo's
//     last row (at least 20µs), within the window. It waits for them if
//     the batch is not full (nor a fair share, below) and waiting pays in
//     device time per row: the wait left, b − now, is less than
//     (R+E)·t(bucket(R))/R − t(bucket(R+E)). So it waits for seven rows
//     about to follow a lone one, and not when clients think for long
//     (their batches then stagger by themselves, and keep the device
//     busy). It never waits past the time the earliest deadline allows
//     (rule 4 of the package doc).
//   - With several runners, a batch takes at most a fair share: the rows
//     in circulation (queued, running, on their way back; a weighted mean
//     at each finish) over InFlight, rounded up to its bucket. The rest
//     goes to the next runner that frees, so clients spread over the
//     runners instead of piling into one large batch.
//
// With open-loop traffic ρ stays near 0 and this never waits: the policy is
// greedy. With closed-loop clients it waits for about their think time.

const (
	// echoFraction: the echo window is 1/echoFraction of the run time of
	// the batch that finished.
	echoFraction = 4
	// echoMin is the echo ratio ρ above which a runner waits for it.
	echoMin = 0.5
	// echoDecay is the weight of a new sample in ρ.
	echoDecay = 1.0 / 8
	// recentArrivals is how many arrivals the scheduler remembers to count
	// the traffic before a finish.
	recentArrivals = 256
	// echoSlack × the mean delay of an echo's last row is how long a
	// runner waits for it at most; echoFloor is the least (clients that
	// answer at once still need the Go scheduler to run them).
	echoSlack = 1.5
	echoFloor = 20 * time.Microsecond
)

// echo is the scheduler's state of the measurement. The scheduler goroutine
// owns it.
type echo struct {
	at, end int64 // the open window, ns since epoch
	latest  int64 // the latest finish in it (finishes that overlap share one)
	rows    int   // rows of the batch whose window is open
	before  int   // rows that arrived in [at-(end-at), at)
	after   int   // rows that arrived in [at, end)
	last    int64 // the latest of their arrival times after latest, ns
	open    bool
	samples int
	rho     float64 // echo ratio
	delay   float64 // mean time from a finish to the last row of its echo, ns
	circ    float64 // rows in circulation: running, queued or on their way back

	recent [recentArrivals]arrival // ring of the latest arrivals
	next   int                     // where the next arrival goes
}

type arrival struct {
	ns   int64
	rows int
}

// finished opens the echo window of a batch of rows rows that finished at
// at and would take run to run again; queued and running are the rows
// queued and running now.
func (e *echo) finished(at int64, rows int, run int64, queued, running int) {
	e.window(at, rows, run)
	c := float64(queued + running + max(0, e.rows-e.after))
	e.circ += echoDecay * (c - e.circ)
}

// window opens the window of a finish, or extends the open one.
func (e *echo) window(at int64, rows int, run int64) {
	w := run / echoFraction
	if e.open && at < e.end {
		// Batches that finish together (on several runners) answer their
		// clients together: one window.
		e.rows += rows
		e.end = max(e.end, at+w)
		e.latest = at
		return
	}
	if e.open {
		e.sample()
	}
	e.at, e.latest, e.end, e.rows, e.after, e.last, e.open = at, at, at+w, rows, 0, 0, true
	e.before = 0
	for i := range recentArrivals {
		a := &e.recent[(e.next-1-i+recentArrivals)%recentArrivals]
		if a.ns < at-w {
			break
		}
		if a.ns < at {
			e.before += a.rows
		} else { // arrived before the scheduler saw the finish
			e.after += a.rows
			e.last = max(e.last, a.ns-at)
		}
	}
}

// arrived counts a request arriving at ns.
func (e *echo) arrived(ns int64, rows int) {
	e.recent[e.next] = arrival{ns, rows}
	e.next = (e.next + 1) % recentArrivals
	if e.open && ns >= e.at && ns < e.end {
		e.after += rows
		if ns >= e.latest {
			e.last = max(e.last, ns-e.latest)
		}
	}
}

// tick closes the window once it is over.
func (e *echo) tick(now int64) {
	if e.open && now >= e.end {
		e.sample()
	}
}

func (e *echo) sample() {
	e.open = false
	// A mean of the first samples (starting from 0), then an exponential
	// one.
	e.samples++
	d := max(1/float64(e.samples+1), echoDecay)
	x := float64(e.after-e.before) / float64(e.rows)
	e.rho += d * (min(max(x, 0), 1) - e.rho)
	if e.after > e.before {
		if e.delay == 0 {
			e.delay = float64(e.last)
		}
		e.delay += echoDecay * (float64(e.last) - e.delay)
	}
}

// closedLoop reports whether the traffic looks closed-loop.
func (e *echo) closedLoop() bool { return e.rho >= echoMin }

// share is a fair batch for one of n runners: the rows in circulation over
// n, at least 1.
func (e *echo) share(n int) int {
	return max(1, int(math.Ceil(e.circ/float64(n)-0.25)))
}

// expected reports how many more rows of the latest finish are expected
// back, and by when (echoSlack × the mean delay of an echo's last row after
// the finish, at least echoFloor, within the window); 0 rows when none is.
func (e *echo) expected(now int64) (rows int, by int64) {
	if !e.open || now >= e.end || !e.closedLoop() {
		return 0, 0
	}
	more := int(e.rho*float64(e.rows) - float64(e.after) + 0.5)
	if more <= 0 {
		return 0, 0 // what was expected has come back
	}
	return more, min(e.latest+max(int64(echoSlack*e.delay), int64(echoFloor)), e.end)
}

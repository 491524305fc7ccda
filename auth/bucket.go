package auth

import (
	"math"
	"sync/atomic"
	"time"
)

// Bucket is a token bucket of Burst tokens refilled at Rate per second,
// kept as one number: the time at which the bucket would be full again
// (the generic cell rate algorithm's theoretical arrival time, which is a
// token bucket stated differently). Take refills it lazily from the time it
// is given, with one compare-and-swap (retried when another request of the
// tenant took a token in between), so a tenant costs no goroutine, no
// timer and no lock. BenchmarkBucket: on par with a mutex on 2 cores.
type Bucket struct {
	interval time.Duration // time per token, 1/rate; 0: no limit
	limit    time.Duration // burst*interval: how far ahead of now full may be
	// full is when the bucket is full again, as a time on the clock Take is
	// given; at or before now it is full.
	full atomic.Int64
}

// NewBucket returns a full bucket of burst tokens refilled at rate tokens a
// second. A rate of 0 (or less) is no limit; a burst below 1 is 1.
func NewBucket(rate float64, burst int) *Bucket {
	b := &Bucket{}
	if rate <= 0 {
		return b
	}
	b.interval = max(time.Duration(math.Round(float64(time.Second)/rate)), 1)
	b.limit = b.interval * time.Duration(max(burst, 1))
	b.full.Store(math.MinInt64 / 2) // full since long before any clock's 0
	return b
}

// Take takes a token at now, a monotonic time (any origin; the same for
// every call). When the bucket is empty it takes none and returns false
// and how long until a token is there.
func (b *Bucket) Take(now time.Duration) (ok bool, wait time.Duration) {
	if b.interval == 0 {
		return true, 0
	}
	for {
		full := b.full.Load()
		next := max(time.Duration(full), now) + b.interval
		if ahead := next - now; ahead > b.limit {
			return false, ahead - b.limit
		}
		if b.full.CompareAndSwap(full, int64(next)) {
			return true, 0
		}
	}
}

// inherit carries the tokens old has used at now over to b (a tenant's new
// bucket after a reload of the keys file): a reload neither refills a
// tenant nor, with a smaller burst, leaves it owing more than its new
// bucket holds.
func (b *Bucket) inherit(old *Bucket, now time.Duration) {
	if b.interval == 0 || old == nil || old.interval == 0 {
		return
	}
	full := max(time.Duration(old.full.Load()), now)
	b.full.Store(int64(min(full, now+b.limit)))
}

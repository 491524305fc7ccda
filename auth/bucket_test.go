package auth

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A bucket of 3 at 2/s, on a clock the test moves: the burst at once,
// then one token every 500 ms, and the wait says when the next one comes.
func TestBucketSyntheticTime(t *testing.T) {
	b := NewBucket(2, 3)
	now := 10 * time.Second
	for i := range 3 {
		if ok, _ := b.Take(now); !ok {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	ok, wait := b.Take(now)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("past the burst: ok %v, wait %s; want a refusal and 500ms", ok, wait)
	}
	// A refusal takes no token: 200 ms on, 300 ms remain.
	if ok, wait := b.Take(now + 200*time.Millisecond); ok || wait != 300*time.Millisecond {
		t.Fatalf("200ms on: ok %v, wait %s; want 300ms", ok, wait)
	}
	now += 500 * time.Millisecond
	if ok, _ := b.Take(now); !ok {
		t.Fatal("a token that has come is refused")
	}
	if ok, _ := b.Take(now); ok {
		t.Fatal("two tokens from one interval")
	}
	// Idle for an hour: full again, never more than the burst.
	now += time.Hour
	n := 0
	for {
		if ok, _ := b.Take(now); !ok {
			break
		}
		n++
	}
	if n != 3 {
		t.Errorf("after an hour idle, %d requests at once; want the burst, 3", n)
	}
}

// Over any span, a bucket lets through at most burst + rate*span requests,
// and at that rate it lets all through: 10 s at 5/s, burst 1.
func TestBucketRate(t *testing.T) {
	b := NewBucket(5, 1)
	taken := 0
	for ms := time.Duration(0); ms < 10*time.Second; ms += time.Millisecond {
		if ok, _ := b.Take(ms); ok {
			taken++
		}
	}
	if taken != 50 {
		t.Errorf("%d requests in 10 s at 5/s burst 1 offered every ms; want 50", taken)
	}
	// A fractional rate: one every 4 s.
	slow := NewBucket(0.25, 1)
	if ok, _ := slow.Take(0); !ok {
		t.Fatal("the first request refused")
	}
	if ok, wait := slow.Take(time.Second); ok || wait != 3*time.Second {
		t.Errorf("1 s on at 0.25/s: ok %v, wait %s; want 3s", ok, wait)
	}
}

func TestBucketUnlimited(t *testing.T) {
	b := NewBucket(0, 0)
	for i := range 1000 {
		if ok, _ := b.Take(0); !ok {
			t.Fatalf("rate 0 refused request %d", i)
		}
	}
}

// Concurrent takes never hand out more tokens than there are: 8
// goroutines on a frozen clock share a burst of 100 exactly.
func TestBucketConcurrent(t *testing.T) {
	b := NewBucket(1, 100)
	var got atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				if ok, _ := b.Take(time.Second); ok {
					got.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if got.Load() != 100 {
		t.Errorf("%d tokens taken from a burst of 100", got.Load())
	}
}

// A reload keeps what a tenant has used: an empty bucket stays empty, and
// a smaller burst caps what it owes.
func TestBucketInherit(t *testing.T) {
	old := NewBucket(1, 10)
	for range 10 {
		old.Take(0)
	}
	same := NewBucket(1, 10)
	same.inherit(old, 0)
	if ok, _ := same.Take(0); ok {
		t.Error("a reload refilled an empty bucket")
	}
	smaller := NewBucket(1, 2)
	smaller.inherit(old, 0)
	if ok, wait := smaller.Take(0); ok || wait != time.Second {
		t.Errorf("burst 2 after 10 taken: ok %v, wait %s; want 1s (no more than its own burst owed)", ok, wait)
	}
	fresh := NewBucket(1, 3)
	fresh.inherit(NewBucket(0, 0), 0) // was unlimited: starts full
	for i := range 3 {
		if ok, _ := fresh.Take(0); !ok {
			t.Fatalf("request %d of a new limit refused", i+1)
		}
	}
}

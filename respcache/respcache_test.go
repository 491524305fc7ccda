package respcache

import (
	"bytes"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

func entryOf(n int, fill byte) *Entry {
	return NewEntry([]Output{{Shape: []int64{1, int64(n)}, Data: bytes.Repeat([]byte{fill}, n)}})
}

func newCache(t *testing.T, cfg Config) *Cache {
	t.Helper()
	c, err := New("m", cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// NewEntry copies: the caller's buffers (a pooled job's) may be reused
// at once without changing the entry.
func TestNewEntryCopies(t *testing.T) {
	data, shape := []byte{1, 2, 3, 4}, []int64{1, 4}
	e := NewEntry([]Output{{Shape: shape, Data: data}})
	data[0], shape[1] = 9, 9
	if o := e.Output(0); o.Data[0] != 1 || o.Shape[1] != 4 {
		t.Fatalf("entry shares the caller's buffers: %v %v", o.Data, o.Shape)
	}
}

// Keys length-prefix every field: moving a byte from one field to the
// next, or changing one byte, changes the key; equal fields give equal
// keys; two caches never share keys.
func TestKeyFields(t *testing.T) {
	c := newCache(t, Config{MaxBytes: 1 << 20})
	k1 := c.NewKey("infer").String("ab").Bytes([]byte("c")).Sum()
	k2 := c.NewKey("infer").String("a").Bytes([]byte("bc")).Sum()
	k3 := c.NewKey("infer").String("ab").Bytes([]byte("c")).Sum()
	k4 := c.NewKey("infer").String("ab").Bytes([]byte("d")).Sum()
	k5 := c.NewKey("image").String("ab").Bytes([]byte("c")).Sum()
	if k1 == k2 || k1 == k4 || k1 == k5 {
		t.Fatal("different fields gave the same key")
	}
	if k1 != k3 {
		t.Fatal("the same fields gave different keys")
	}
	c2 := newCache(t, Config{MaxBytes: 1 << 20})
	if c2.NewKey("infer").String("ab").Bytes([]byte("c")).Sum() == k1 {
		t.Fatal("two caches share a hash key")
	}
}

// Concurrent misses of one key compute once; the waiters count as hits
// and get the very entry the leader stored.
func TestDoOnce(t *testing.T) { synctest.Test(t, testDoOnce) }

func testDoOnce(t *testing.T) {
	c := newCache(t, Config{MaxBytes: 1 << 20})
	key := c.NewKey("t").String("x").Sum()
	var calls atomic.Int32
	release := make(chan struct{})
	const n = 8
	var wg sync.WaitGroup
	got := make([]*Entry, n)
	for i := range n {
		wg.Go(func() {
			e, _, err := c.Do(key, func() (*Entry, error) {
				calls.Add(1)
				<-release
				return entryOf(10, 1), nil
			})
			if err != nil {
				t.Error(err)
			}
			got[i] = e
		})
	}
	synctest.Wait() // every goroutine waits: the leader on release, the rest on it
	close(release)
	wg.Wait()
	if calls.Load() != 1 {
		t.Fatalf("compute ran %d times, want 1", calls.Load())
	}
	for _, e := range got {
		if e != got[0] {
			t.Fatal("callers got different entries")
		}
	}
	if s := c.Stats(); s.Misses != 1 || s.Hits != n-1 {
		t.Fatalf("stats %+v: want 1 miss, %d hits", s, n-1)
	}
	if _, hit, _ := c.Do(key, func() (*Entry, error) { t.Fatal("computed a stored key"); return nil, nil }); !hit {
		t.Fatal("the stored key missed")
	}
}

// A failed computation is not stored, and its waiters compute on their
// own rather than inheriting the error.
func TestDoLeaderFails(t *testing.T) { synctest.Test(t, testDoLeaderFails) }

func testDoLeaderFails(t *testing.T) {
	c := newCache(t, Config{MaxBytes: 1 << 20})
	key := c.NewKey("t").String("x").Sum()
	started, release := make(chan struct{}), make(chan struct{})
	var leaderErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		_, _, leaderErr = c.Do(key, func() (*Entry, error) {
			close(started)
			<-release
			return nil, errors.New("timeout")
		})
	})
	<-started
	var followerErr error
	var followerComputed atomic.Bool
	wg.Go(func() {
		_, _, followerErr = c.Do(key, func() (*Entry, error) {
			followerComputed.Store(true)
			return entryOf(10, 2), nil
		})
	})
	synctest.Wait() // the follower waits on the leader's flight
	close(release)
	wg.Wait()
	if leaderErr == nil || followerErr != nil || !followerComputed.Load() {
		t.Fatalf("leader %v, follower %v (computed %v): want the leader's error only", leaderErr, followerErr, followerComputed.Load())
	}
	if e, ok := c.Get(key); !ok || e.Output(0).Data[0] != 2 {
		t.Fatal("the follower's entry was not stored")
	}
}

// The weight stays under MaxBytes, evictions are counted, and an entry
// larger than the whole cache is not stored.
func TestByteBound(t *testing.T) {
	set := metrics.NewSet()
	c, err := New("m", Config{MaxBytes: 64 << 10}, set)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 200 {
		key := c.NewKey("t").Int(int64(i)).Sum()
		c.Do(key, func() (*Entry, error) { return entryOf(4000, byte(i)), nil })
	}
	c.CleanUp()
	s := c.Stats()
	if s.Bytes > 64<<10 || s.Evictions == 0 || s.Entries > 16 {
		t.Fatalf("stats %+v: want bytes <= 64KiB and evictions", s)
	}
	big := c.NewKey("t").String("big").Sum()
	c.Do(big, func() (*Entry, error) { return entryOf(100<<10, 1), nil })
	if _, ok := c.Get(big); ok {
		t.Fatal("an entry over max_bytes was stored")
	}
	if g := set.GetOrCreateGauge(`inferd_cache_bytes{model="m"}`, nil).Get(); int64(g) != c.Stats().Bytes {
		t.Fatalf("inferd_cache_bytes %v, cache holds %d", g, c.Stats().Bytes)
	}
	c.Close()
	if g := set.GetOrCreateGauge(`inferd_cache_bytes{model="m"}`, nil).Get(); g != 0 {
		t.Fatalf("inferd_cache_bytes %v after Close, want 0", g)
	}
}

// An entry is not answered after its TTL.
func TestTTL(t *testing.T) {
	c := newCache(t, Config{MaxBytes: 1 << 20, TTL: 50 * time.Millisecond})
	key := c.NewKey("t").String("x").Sum()
	c.Do(key, func() (*Entry, error) { return entryOf(10, 1), nil })
	if _, ok := c.Get(key); !ok {
		t.Fatal("missing at once")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.CleanUp()
		if _, ok := c.Get(key); !ok && c.Stats().Expired == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("still answered 5s after a 50ms TTL")
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.CleanUp()
	if s := c.Stats(); s.Expired != 1 || s.Bytes != 0 {
		t.Fatalf("stats %+v: want 1 expired, 0 bytes", s)
	}
}

func TestNewChecks(t *testing.T) {
	if _, err := New("m", Config{}, nil); err == nil {
		t.Fatal("max_bytes 0 accepted")
	}
	if _, err := New("m", Config{MaxBytes: 1, TTL: -1}, nil); err == nil {
		t.Fatal("negative ttl accepted")
	}
}

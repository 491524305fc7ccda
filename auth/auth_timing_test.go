package auth

import (
	"sync"
	"testing"
	"time"
)

// BenchmarkCheck is what a request with a key costs at the replica: the
// key parsed, hashed and looked up, the model matched, a token taken, the
// tenant counted; in parallel, one tenant for every goroutine (the
// bucket's compare-and-swap under contention).
func BenchmarkCheck(b *testing.B) {
	a, _, _ := newTestAuth(b, Settings{Enabled: true, KeysFile: testKeysFile(b)})
	epoch := time.Now()
	a.now = func() time.Duration { return time.Since(epoch) }
	r := Request{Authorization: withBearer("key-b"), Model: []byte("tiny-uint8")}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := a.Check(r); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkBucket compares the lock-free bucket with the same bucket
// behind a mutex, both contended by every goroutine.
func BenchmarkBucket(b *testing.B) {
	epoch := time.Now()
	now := func() time.Duration { return time.Since(epoch) }
	b.Run("cas", func(b *testing.B) {
		bk := NewBucket(1e6, 1<<20)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				bk.Take(now())
			}
		})
	})
	b.Run("mutex", func(b *testing.B) {
		bk := NewBucket(1e6, 1<<20)
		var mu sync.Mutex
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				mu.Lock()
				bk.Take(now())
				mu.Unlock()
			}
		})
	})
}

package respcache

import (
	"encoding/binary"
	"runtime"
	"testing"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	lru "github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/maypok86/otter/v2"
)

// The benchmarks that chose the cache library (bench/results/
// cache-2026-11-30.md): the cost of a hit, alone and from two
// goroutines, and the memory each library adds per entry beyond the
// payload. Keys are 32-byte hashes, values *payload of 4 KiB (ResNet50's
// 1000 float32 scores), as the server stores them.

const (
	libEntries = 10_000
	libPayload = 4000
)

type payload struct{ data []byte }

type libCache interface {
	get(k [32]byte) (*payload, bool)
	set(k [32]byte, v *payload)
}

type otterCache struct {
	c *otter.Cache[[32]byte, *payload]
}

func (o otterCache) get(k [32]byte) (*payload, bool) { return o.c.GetIfPresent(k) }
func (o otterCache) set(k [32]byte, v *payload)      { o.c.Set(k, v) }

type ristrettoCache struct {
	c *ristretto.Cache[string, *payload]
}

// get converts the key without a copy, as a caller on the hot path would.
func (r ristrettoCache) get(k [32]byte) (*payload, bool) { return r.c.Get(string(k[:])) }
func (r ristrettoCache) set(k [32]byte, v *payload) {
	r.c.SetWithTTL(string(k[:]), v, int64(len(v.data)+64), time.Hour)
	r.c.Wait() // a Set is applied asynchronously and may be dropped
}

type lruCache struct{ c *lru.LRU[[32]byte, *payload] }

func (l lruCache) get(k [32]byte) (*payload, bool) { return l.c.Get(k) }
func (l lruCache) set(k [32]byte, v *payload)      { l.c.Add(k, v) }

// libraries builds each candidate for n entries of libPayload bytes. The
// byte bound: otter and ristretto weigh entries; golang-lru bounds only a
// count, so bytes would be bounded by count × the largest entry, or by a
// byte counter beside it evicting RemoveOldest in a loop.
func libraries(n int) map[string]func() libCache {
	maxBytes := int64(n) * (libPayload + 64) * 2
	return map[string]func() libCache{
		"otter": func() libCache {
			return otterCache{otter.Must(&otter.Options[[32]byte, *payload]{
				MaximumWeight:    uint64(maxBytes),
				Weigher:          func(_ [32]byte, v *payload) uint32 { return uint32(len(v.data) + 64) },
				ExpiryCalculator: otter.ExpiryWriting[[32]byte, *payload](time.Hour),
			})}
		},
		"ristretto": func() libCache {
			c, err := ristretto.NewCache(&ristretto.Config[string, *payload]{
				NumCounters: int64(n) * 10, MaxCost: maxBytes, BufferItems: 64,
			})
			if err != nil {
				panic(err)
			}
			return ristrettoCache{c}
		},
		"golang-lru": func() libCache {
			return lruCache{lru.NewLRU[[32]byte, *payload](2*n, nil, time.Hour)}
		},
	}
}

func libKey(i int) (k [32]byte) {
	binary.LittleEndian.PutUint64(k[:], uint64(i)*0x9e3779b97f4a7c15)
	binary.LittleEndian.PutUint64(k[8:], uint64(i))
	return k
}

// BenchmarkLibraryHit is the cost of a hit among 1,000 hot keys; run with
// -cpu 1,2 for contention.
func BenchmarkLibraryHit(b *testing.B) {
	for _, name := range []string{"otter", "ristretto", "golang-lru"} {
		b.Run(name, func(b *testing.B) {
			c := libraries(1000)[name]()
			keys := make([][32]byte, 1000)
			for i := range keys {
				keys[i] = libKey(i)
				c.set(keys[i], &payload{data: make([]byte, libPayload)})
			}
			for i := range keys { // ristretto may drop Sets: count what stays
				if _, ok := c.get(keys[i]); !ok {
					c.set(keys[i], &payload{data: make([]byte, libPayload)})
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i, miss := 0, 0
				for pb.Next() {
					if _, ok := c.get(keys[i%len(keys)]); !ok {
						miss++
					}
					i++
				}
				_ = miss
			})
		})
	}
}

// BenchmarkLibraryMemory reports the heap each library holds per entry
// beyond the payload (key, value pointer and the payload's own allocation
// excluded), for 10,000 entries, and how many of them it kept.
func BenchmarkLibraryMemory(b *testing.B) {
	for _, name := range []string{"otter", "ristretto", "golang-lru"} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				runtime.GC() // the last round's cache goes first
				vals := make([]*payload, libEntries)
				for i := range vals {
					vals[i] = &payload{data: make([]byte, libPayload)}
				}
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				c := libraries(libEntries)[name]()
				for i := range vals {
					c.set(libKey(i), vals[i])
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				kept := 0
				for i := range vals {
					if _, ok := c.get(libKey(i)); ok {
						kept++
					}
				}
				b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/libEntries, "B/entry")
				b.ReportMetric(float64(kept), "kept")
				runtime.KeepAlive(c)
				runtime.KeepAlive(vals)
			}
		})
	}
}

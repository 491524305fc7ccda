package respcache

import (
	"crypto/rand"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/maypok86/otter/v2"
	"golang.org/x/sync/singleflight"
)

// EntryOverhead is the bytes an entry is weighed at beyond its outputs'
// data and shapes: the cache library's node (about 140 bytes measured),
// the Entry and its slice headers.
const EntryOverhead = 256

// Config sizes one model's cache.
type Config struct {
	// MaxBytes bounds the entries' weight: their outputs plus
	// EntryOverhead each. Required (> 0): a model without a cache has no
	// Cache.
	MaxBytes int64
	// TTL is how long an entry is answered after it was stored; 0 keeps it
	// until it is evicted.
	TTL time.Duration
}

// Cache is the response cache of one model; it is safe for concurrent
// use.
type Cache struct {
	cfg     Config
	c       *otter.Cache[Key, *Entry]
	flight  singleflight.Group
	key     [32]byte  // the hash key, random per Cache
	hashers sync.Pool // *Hasher keyed with key

	hits, misses, evicted, expired atomic.Uint64
	bytes, entries                 atomic.Int64
	m                              cacheMetrics
}

// cacheMetrics are created with GetOrCreate*, so the caches of a model
// being reloaded share them; the gauges move by deltas so they stay right
// when shared.
type cacheMetrics struct {
	hits, misses     *metrics.Counter
	evicted, expired *metrics.Counter
	bytes, entries   *metrics.Gauge
}

// Help describes the cache's metric families for the HELP lines of
// /metrics.
var Help = map[string]string{
	"inferd_cache_requests_total":  "Response cache lookups, by model and result: hit (answered from the cache, or from a concurrent request's computation) or miss (computed).",
	"inferd_cache_bytes":           "Bytes the response cache holds, by model: outputs plus a fixed per-entry overhead, at most models[].cache.max_bytes.",
	"inferd_cache_entries":         "Entries the response cache holds, by model.",
	"inferd_cache_evictions_total": "Response cache entries removed, by model and reason: size (to stay under models[].cache.max_bytes) or expired (models[].cache.ttl).",
}

// New returns an empty cache for the model named model, its metrics on
// set (nil: a new set).
func New(model string, cfg Config, set *metrics.Set) (*Cache, error) {
	if cfg.MaxBytes <= 0 {
		return nil, fmt.Errorf("respcache: max_bytes %d: must be > 0", cfg.MaxBytes)
	}
	if cfg.TTL < 0 {
		return nil, fmt.Errorf("respcache: ttl %v: must be >= 0", cfg.TTL)
	}
	if set == nil {
		set = metrics.NewSet()
	}
	l := `model="` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(model) + `"`
	c := &Cache{cfg: cfg, m: cacheMetrics{
		hits:    set.GetOrCreateCounter(`inferd_cache_requests_total{` + l + `,result="hit"}`),
		misses:  set.GetOrCreateCounter(`inferd_cache_requests_total{` + l + `,result="miss"}`),
		evicted: set.GetOrCreateCounter(`inferd_cache_evictions_total{` + l + `,reason="size"}`),
		expired: set.GetOrCreateCounter(`inferd_cache_evictions_total{` + l + `,reason="expired"}`),
		bytes:   set.GetOrCreateGauge(`inferd_cache_bytes{`+l+`}`, nil),
		entries: set.GetOrCreateGauge(`inferd_cache_entries{`+l+`}`, nil),
	}}
	rand.Read(c.key[:])
	opts := &otter.Options[Key, *Entry]{
		MaximumWeight: uint64(cfg.MaxBytes),
		Weigher:       func(_ Key, e *Entry) uint32 { return e.weight() },
		// Runs under the entry's bucket lock, in step with the store: the
		// byte count never misses a deletion.
		OnAtomicDeletion: func(ev otter.DeletionEvent[Key, *Entry]) { c.deleted(ev) },
	}
	if cfg.TTL > 0 {
		opts.ExpiryCalculator = otter.ExpiryWriting[Key, *Entry](cfg.TTL)
	}
	var err error
	if c.c, err = otter.New(opts); err != nil {
		return nil, fmt.Errorf("respcache: %w", err)
	}
	return c, nil
}

func (c *Cache) deleted(ev otter.DeletionEvent[Key, *Entry]) {
	w := int64(ev.Value.weight())
	c.bytes.Add(-w)
	c.entries.Add(-1)
	c.m.bytes.Add(float64(-w))
	c.m.entries.Dec()
	switch ev.Cause {
	case otter.CauseOverflow:
		c.evicted.Add(1)
		c.m.evicted.Inc()
	case otter.CauseExpiration:
		c.expired.Add(1)
		c.m.expired.Inc()
	}
}

// Config is the cache's configuration.
func (c *Cache) Config() Config { return c.cfg }

// Get returns the entry of key, counting a hit or a miss.
func (c *Cache) Get(key Key) (*Entry, bool) {
	e, ok := c.c.GetIfPresent(key)
	c.count(ok)
	return e, ok
}

func (c *Cache) count(hit bool) {
	if hit {
		c.hits.Add(1)
		c.m.hits.Inc()
	} else {
		c.misses.Add(1)
		c.m.misses.Inc()
	}
}

// Do returns the entry of key: the cached one (hit), else the one compute
// returns, which it stores (miss). Concurrent callers that miss on one key
// run compute once: the others wait for it and count as hits. When that
// computation fails, nothing is stored and each waiting caller runs its own
// compute, so it gets what its own request would have got. compute must
// return an entry that nothing else modifies (NewEntry copies).
func (c *Cache) Do(key Key, compute func() (*Entry, error)) (e *Entry, hit bool, err error) {
	if e, ok := c.c.GetIfPresent(key); ok {
		c.count(true)
		return e, true, nil
	}
	led := false
	v, err, _ := c.flight.Do(string(key[:]), func() (any, error) {
		led = true
		// Stored between the lookup above and the flight's start.
		if e, ok := c.c.GetIfPresent(key); ok {
			return e, nil
		}
		e, err := compute()
		if err != nil {
			return nil, err
		}
		c.put(key, e)
		return e, nil
	})
	switch {
	case err == nil && led:
		c.count(false)
		return v.(*Entry), false, nil
	case err == nil:
		c.count(true)
		return v.(*Entry), true, nil
	case led:
		c.count(false)
		return nil, false, err
	}
	// The leader failed: this caller computes for itself.
	c.count(false)
	if e, err = compute(); err != nil {
		return nil, false, err
	}
	c.put(key, e)
	return e, false, nil
}

// put stores e under key unless it alone would exceed MaxBytes.
func (c *Cache) put(key Key, e *Entry) {
	w := int64(e.weight())
	if w > c.cfg.MaxBytes {
		return
	}
	// Counted before the store: the deletion that may follow at once
	// subtracts what was added.
	c.bytes.Add(w)
	c.entries.Add(1)
	c.m.bytes.Add(float64(w))
	c.m.entries.Inc()
	c.c.Set(key, e)
}

// Stats are a cache's counters since it was created.
type Stats struct {
	Hits, Misses uint64
	// Evictions counts entries removed to stay under MaxBytes, Expired
	// those removed after their TTL.
	Evictions, Expired uint64
	// Bytes and Entries are what the cache holds now; Bytes is at most
	// MaxBytes once the library's maintenance has run.
	Bytes, Entries int64
}

// Stats returns the cache's counters. The library evicts in batches
// shortly after a store; CleanUp runs what is pending.
func (c *Cache) Stats() Stats {
	return Stats{Hits: c.hits.Load(), Misses: c.misses.Load(), Evictions: c.evicted.Load(),
		Expired: c.expired.Load(), Bytes: c.bytes.Load(), Entries: c.entries.Load()}
}

// CleanUp runs the library's pending maintenance: evictions and
// expirations.
func (c *Cache) CleanUp() { c.c.CleanUp() }

// Close drops every entry (the gauges shared with a reloaded model's
// cache go down by what this one held) and stops the library's
// goroutines.
func (c *Cache) Close() {
	c.c.InvalidateAll()
	c.c.CleanUp()
	c.c.StopAllGoroutines()
}

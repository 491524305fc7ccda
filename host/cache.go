package host

import (
	"time"

	"github.com/inferd/inferd/respcache"
)

// Cache is the model's response cache (models[].cache), or nil when it is
// off. Front ends build keys with Cache().NewKey and answer through
// Cached.
func (m *Model) Cache() *respcache.Cache { return m.cache }

// Cached answers key from the model's cache, or runs compute (once for
// concurrent requests of key, see respcache.Cache.Do) and stores its
// entry. It records Triton's statistics as Triton does: a hit counts as a
// success (from arrived, when the request arrived), in queue (0 ns) and in
// cache_hit, not in inference_count, execution_count or compute_*; a miss
// in cache_miss, both with the cache's own time since hashing began at
// hashed (the lookup and, for a miss, the insertion, not compute's).
// compute submits a job as an uncached request would, so its statistics
// are the batcher's.
func (m *Model) Cached(key respcache.Key, hashed, arrived time.Time,
	compute func() (*respcache.Entry, error)) (e *respcache.Entry, hit bool, err error) {
	var computeTime time.Duration
	e, hit, err = m.cache.Do(key, func() (*respcache.Entry, error) {
		start := time.Now()
		defer func() { computeTime = time.Since(start) }()
		return compute()
	})
	now := time.Now()
	switch {
	case hit:
		m.stats.cacheHit.add(now.Sub(hashed))
		m.stats.success.add(now.Sub(arrived))
		m.stats.queue.add(0) // Triton's queue count includes hits; they wait for nothing
		m.stats.last.Store(uint64(now.UnixMilli()))
	case err == nil:
		m.stats.cacheMiss.add(now.Sub(hashed) - computeTime)
	}
	return e, hit, err
}

// Entry copies the job's outputs, after Submit, into a cache entry that
// outlives the job.
func (j *Job) Entry() *respcache.Entry {
	outs := make([]respcache.Output, len(j.out))
	for i := range j.out {
		outs[i] = respcache.Output{Shape: j.shapes[i], Data: j.out[i]}
	}
	return respcache.NewEntry(outs)
}

// Package budget bounds the memory that requests hold at once. Every
// request reserves what it is about to allocate (a body as it arrives, a
// decompressed body as it grows, parsed tensors, a decoded image) before it
// allocates it, and gives it all back when it is answered. A reservation
// that does not fit waits briefly for others to finish, then fails with an
// *httperr.Error the server answers 503 and Retry-After; one that could
// never fit fails at once with 413.
//
// The budget counts bytes a request decides, not the server's own working
// memory (models, pools, connections), which is fixed once models load.
package budget

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"golang.org/x/sync/semaphore"

	"github.com/inferd/inferd/httperr"
)

// DefaultWait is how long a reservation that does not fit waits for memory
// that other requests are about to give back.
const DefaultWait = 100 * time.Millisecond

// Budget is a byte budget shared by all requests of a server.
type Budget struct {
	limit int64
	wait  time.Duration
	sem   *semaphore.Weighted
	large *semaphore.Weighted // what large holds may take together
	used  atomic.Int64
	peak  atomic.Int64 // highest used since the last TakePeak

	rejected *metrics.Counter
	tooLarge *metrics.Counter
}

// New returns a budget of limit bytes (> 0). A reservation that does not
// fit waits up to wait (DefaultWait when 0). Its metrics go to set (nil: no
// metrics): inferd_memory_budget_bytes, inferd_memory_reserved_bytes and
// inferd_memory_rejected_total{reason}.
func New(limit int64, wait time.Duration, set *metrics.Set) *Budget {
	if limit <= 0 {
		panic(fmt.Sprintf("budget: limit %d: must be > 0", limit))
	}
	if wait <= 0 {
		wait = DefaultWait
	}
	b := &Budget{limit: limit, wait: wait, sem: semaphore.NewWeighted(limit), large: semaphore.NewWeighted(limit - limit/8)}
	if set == nil {
		set = metrics.NewSet()
	}
	set.GetOrCreateGauge("inferd_memory_budget_bytes", func() float64 { return float64(b.limit) })
	set.GetOrCreateGauge("inferd_memory_reserved_bytes", func() float64 { return float64(b.used.Load()) })
	b.rejected = set.GetOrCreateCounter(`inferd_memory_rejected_total{reason="busy"}`)
	b.tooLarge = set.GetOrCreateCounter(`inferd_memory_rejected_total{reason="too_large"}`)
	return b
}

// Limit returns the budget in bytes.
func (b *Budget) Limit() int64 { return b.limit }

// MaxHold is the most one request may hold: the large share of the budget.
func (b *Budget) MaxHold() int64 { return b.limit - b.limit/8 }

// Used returns the bytes reserved now.
func (b *Budget) Used() int64 { return b.used.Load() }

// TakePeak returns the most bytes reserved at once since the last call, and
// starts a new period at what is reserved now.
func (b *Budget) TakePeak() int64 { return b.peak.Swap(b.used.Load()) }

// A hold of more than smallHold() bytes (1/32 of the budget, at least
// 1 MiB) is large. Large holds together may take at most 7/8 of the
// budget, so that small requests (an image or two as JSON, an ordinary
// photo) always find room while large ones queue: a burst of decompression
// bombs cannot starve everyone else.
func (b *Budget) smallHold() int64 { return max(b.limit/32, 1<<20) }

// acquire reserves n bytes, and large more of the large share, waiting up
// to the budget's wait for both. The fast path (both fit now) allocates
// nothing.
func (b *Budget) acquire(n, large int64, what string) error {
	gotLarge := large <= 0 || b.large.TryAcquire(large)
	if !gotLarge || (n > 0 && !b.sem.TryAcquire(n)) {
		if !b.acquireSlow(n, large, gotLarge) {
			b.rejected.Inc()
			return &httperr.Error{Status: http.StatusServiceUnavailable, RetryAfter: time.Second,
				Err: fmt.Errorf("server busy: %s needs %d bytes of memory and requests in progress hold %d of the %d bytes of server.memory_limit; retry shortly",
					what, n, b.used.Load(), b.limit)}
		}
	}
	u := b.used.Add(n)
	for {
		p := b.peak.Load()
		if u <= p || b.peak.CompareAndSwap(p, u) {
			break
		}
	}
	return nil
}

// acquireSlow waits up to the budget's wait for what acquire could not
// take at once: the large share unless gotLarge, then n bytes. On failure
// it holds nothing.
func (b *Budget) acquireSlow(n, large int64, gotLarge bool) bool {
	ctx, cancel := context.WithTimeout(context.Background(), b.wait)
	defer cancel()
	if !gotLarge {
		if b.large.Acquire(ctx, large) != nil {
			return false
		}
	}
	if n > 0 && !b.sem.TryAcquire(n) && b.sem.Acquire(ctx, n) != nil {
		if large > 0 {
			b.large.Release(large)
		}
		return false
	}
	return true
}

func (b *Budget) release(n int64) {
	if n > 0 {
		b.used.Add(-n)
		b.sem.Release(n)
	}
}

// Hold is what one request has reserved. The zero Hold has no budget and
// reserves nothing (every Reserve succeeds). A Hold is used by one goroutine.
type Hold struct {
	b     *Budget
	n     int64
	large int64 // of n, what is held in the large share
}

// Hold returns an empty hold on b.
func (b *Budget) Hold() Hold { return Hold{b: b} }

// Reserve adds n bytes to the hold; what says what they are for, in the
// error when they do not fit ("a 20000000-byte body"). That error is an
// *httperr.Error: 503 with a RetryAfter when the budget stayed full for its
// wait, 413 when the hold would be more than MaxHold.
func (h *Hold) Reserve(n int64, what string) error {
	if h.b == nil || n <= 0 {
		return nil
	}
	if total := h.n + n; total > h.b.MaxHold() {
		h.b.tooLarge.Inc()
		return httperr.Errorf(http.StatusRequestEntityTooLarge,
			"%s needs %d bytes of memory, more than this server allows one request (%d bytes, 7/8 of server.memory_limit)", what, total, h.b.MaxHold())
	}
	var large int64
	if h.n+n > h.b.smallHold() {
		large = h.n + n - h.large // the whole hold moves into the large share
	}
	if err := h.b.acquire(n, large, what); err != nil {
		return err
	}
	h.n += n
	h.large += large
	return nil
}

// Return gives back n of the bytes the hold reserved (all of them when n is
// more), when the request no longer holds them: the old buffer once a
// grown one has taken its place.
func (h *Hold) Return(n int64) {
	if h.b == nil || n <= 0 {
		return
	}
	n = min(n, h.n)
	h.b.release(n)
	if l := min(n, h.large); l > 0 {
		h.b.large.Release(l)
		h.large -= l
	}
	h.n -= n
}

// Held returns the bytes the hold has reserved.
func (h *Hold) Held() int64 { return h.n }

// Release gives back everything the hold reserved.
func (h *Hold) Release() {
	if h.b != nil {
		h.b.release(h.n)
		if h.large > 0 {
			h.b.large.Release(h.large)
		}
	}
	h.n, h.large = 0, 0
}

// Help describes the metric families a Budget creates, for HELP lines.
var Help = map[string]string{
	"inferd_memory_budget_bytes":   "Bytes requests may hold at once (server.memory_limit).",
	"inferd_memory_reserved_bytes": "Bytes reserved now by requests: bodies, decompressed bodies, parsed tensors, decoded images.",
	"inferd_memory_rejected_total": "Requests refused for memory: busy (503, the budget was full) or too_large (413, more than the whole budget).",
}

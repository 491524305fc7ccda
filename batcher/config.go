package batcher

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Limits on Config values; larger values are rejected by New as a likely typo.
const (
	maxMaxBatchSize = 1 << 16
	maxInFlight     = 1024
	maxPriorities   = 64
	maxQueue        = 1 << 24
)

// queueBackstop is the default QueueCapacity: the only limit before a run
// time is known, a hard cap after.
const queueBackstop = 1024

// Config tunes one Batcher. The zero value of every field means "use the
// default"; Batcher.Config reports the values in effect. New rejects negative
// or inconsistent values and names the offending field in the error, using
// the snake_case key the server's config file uses. This package owns the
// settings a model's "batcher:" section holds (their YAML keys, defaults
// and validation); the fields tagged "-" the server takes from the
// sessions (package gpu owns max_batch and the buckets).
type Config struct {
	// MaxBatchSize is the most rows one batch may carry. Default 64, or the
	// last entry of Buckets when Buckets is set. Trap: a request with more
	// rows than this is rejected (requests are never split), so it also caps
	// the rows one client request may send.
	MaxBatchSize int `yaml:"-"`

	// Buckets are the batch sizes the device actually runs: a batch of n rows
	// is padded up to the smallest bucket >= n and the padding is wasted
	// work. Default: the powers of two below MaxBatchSize, then MaxBatchSize
	// (1, 2, 4, ..., 32, 64). Must be strictly ascending, >= 1, and end with
	// MaxBatchSize. Trap: with few buckets a batch one row past a bucket
	// costs as much as the next bucket; the adaptive window trims batches to
	// the most efficient bucket, the fixed window does not.
	Buckets []int `yaml:"-"`

	// MaxDelay is the fixed delay window: the longest time from the oldest
	// queued request's arrival until a batch is closed even if it is not
	// full. Default 0: run as soon as a runner is free, with whatever is
	// queued, except that when closed-loop clients answered by the batch
	// that just finished are about to come back, the runner waits for them
	// as long as that saves device time (echo.go; open-loop traffic never
	// waits). With LatencyTarget set it is only an upper bound on waiting.
	// Trap: every request pays up to MaxDelay of extra latency at low load.
	MaxDelay time.Duration `yaml:"max_delay"`

	// LatencyTarget > 0 turns on the adaptive window: a fitted cost model
	// decides how long a batch may wait (at most until its oldest request
	// could still finish within LatencyTarget), trims batches to efficient
	// buckets, and drops requests that can no longer meet their deadline
	// when their turn comes (ErrCannotMeetDeadline; admission sheds in every
	// mode). Default 0: off. Trap: it is a target for the
	// time a request spends in the batcher (queue + run), not a deadline;
	// requests are only shed against their own deadline (Request.Timeout or
	// DefaultTimeout), so set DefaultTimeout near the SLO to bound the tail.
	LatencyTarget time.Duration `yaml:"latency_target"`

	// QueueCapacity is a hard cap on the requests (not rows) waiting; beyond
	// it Submit fails at once with ErrQueueFull. Default 0: derived from
	// time. Whatever its value, a request is admitted only if its predicted
	// wait (the rows queued ahead of it at its priority or higher, at the
	// throughput measured from completed batches, plus the batches running
	// and its own run) fits its deadline budget, otherwise Submit fails at
	// once with ErrOverloaded; so the queue holds what can be answered
	// within DefaultTimeout. Until a run time is known (the first batch has
	// finished, or BucketRunTimes seeds it) only the cap applies, and the
	// default cap is a backstop of 1024 requests (what Config reports).
	// Trap: on a fast device 1024 requests can be far less work than
	// DefaultTimeout (a GPU at 6,000 rows/s answers them in 0.17 s), so
	// there the backstop, not the deadline, bounds the queue; raise it only
	// with the memory queued requests hold in mind (the server keeps each
	// one's decoded input).
	QueueCapacity int `yaml:"queue_capacity"`

	// DefaultTimeout is each request's deadline budget, counted from Submit.
	// Default 30s. A request's own Timeout may shorten it, never lengthen
	// it. Trap: a request still queued at its deadline fails with
	// ErrDeadlineExceeded; a request already running is not interrupted.
	DefaultTimeout time.Duration `yaml:"default_timeout"`

	// InFlight is how many batches run at once (one per session instance);
	// the Runner is called from up to InFlight goroutines. Default 1. Trap:
	// more than the device can overlap only adds contention.
	InFlight int `yaml:"-"`

	// Priorities is the number of priority levels; 0 is the highest.
	// Default 2. Batches are filled from the highest level first, FIFO
	// within a level. Trap: a steady stream at a high level starves the
	// lower ones (their requests then time out).
	Priorities int `yaml:"priorities"`

	// AdmissionShare is the share of a request's deadline budget that
	// admission fills: a request is admitted while its predicted wait fits
	// AdmissionShare × its budget. Default 0.8. The rest is margin for run
	// times that rise after a request was admitted (other work arriving on
	// the host, a neighbour on the GPU), which a prediction from measured
	// times cannot see coming. Under overload it costs no throughput (the
	// queue stays full either way), only queue depth; 1 fills the whole
	// budget, for a device whose run times do not move.
	AdmissionShare float64 `yaml:"admission_share"`

	// BucketRunTimes optionally seeds admission with how long one batch
	// takes at each bucket, in the order of Buckets (one entry per bucket; 0
	// means not known), as the server measures them at warm-up. Default
	// none: admission by time starts when the first batch finishes, and
	// until then only QueueCapacity protects the replica. Measured run times
	// of completed batches replace the seeds bucket by bucket. Trap: the
	// first run of a bucket pays one-off costs (memory arenas, cuDNN's
	// algorithm search) and overstates the steady time, which makes
	// admission too strict until real batches replace it: time a later run.
	// A time measured with one batch running understates the time with
	// InFlight batches sharing the device.
	BucketRunTimes []time.Duration `yaml:"-"`

	// greedy turns the default window's wait for returning clients off
	// (echo.go), for tests to compare with the policy it replaced.
	greedy bool
}

// Validate reports every value New would reject in c, one error per
// problem (errors.Join), as New words them ("batcher: queue_capacity -1:
// must be >= 1", the key as Config's YAML tags name it); nil when New
// accepts c. A config check calls it before anything is opened.
func (c Config) Validate() error {
	_, err := c.withDefaults()
	return err
}

// withDefaults validates c and returns a copy with every default filled in.
func (c Config) withDefaults() (Config, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("batcher: "+format, args...)) }
	switch {
	case c.MaxBatchSize < 0:
		bad("max_batch_size %d: must be >= 1", c.MaxBatchSize)
	case c.MaxBatchSize > maxMaxBatchSize:
		bad("max_batch_size %d: must be <= %d", c.MaxBatchSize, maxMaxBatchSize)
	case c.MaxBatchSize == 0:
		c.MaxBatchSize = 64
		if n := len(c.Buckets); n > 0 {
			c.MaxBatchSize = c.Buckets[n-1]
		}
	}
	if len(c.Buckets) == 0 {
		c.Buckets = defaultBuckets(max(c.MaxBatchSize, 1))
	} else {
		c.Buckets = slices.Clone(c.Buckets)
		ok := true
		for i, v := range c.Buckets {
			if v < 1 {
				bad("buckets %v: entry %d must be >= 1", c.Buckets, v)
				ok = false
				break
			}
			if i > 0 && v <= c.Buckets[i-1] {
				bad("buckets %v: must be strictly ascending", c.Buckets)
				ok = false
				break
			}
		}
		if last := c.Buckets[len(c.Buckets)-1]; ok && last != c.MaxBatchSize {
			bad("buckets %v: last entry must equal max_batch_size %d", c.Buckets, c.MaxBatchSize)
		}
	}
	if c.MaxDelay < 0 {
		bad("max_delay %v: must be >= 0", c.MaxDelay)
	}
	if c.LatencyTarget < 0 {
		bad("latency_target %v: must be >= 0", c.LatencyTarget)
	}
	switch {
	case c.QueueCapacity < 0:
		bad("queue_capacity %d: must be >= 1", c.QueueCapacity)
	case c.QueueCapacity > maxQueue:
		bad("queue_capacity %d: must be <= %d", c.QueueCapacity, maxQueue)
	case c.QueueCapacity == 0:
		c.QueueCapacity = queueBackstop
	}
	switch {
	case c.DefaultTimeout < 0:
		bad("default_timeout %v: must be > 0", c.DefaultTimeout)
	case c.DefaultTimeout == 0:
		c.DefaultTimeout = 30 * time.Second
	}
	switch {
	case c.InFlight < 0:
		bad("in_flight %d: must be >= 1", c.InFlight)
	case c.InFlight > maxInFlight:
		bad("in_flight %d: must be <= %d", c.InFlight, maxInFlight)
	case c.InFlight == 0:
		c.InFlight = 1
	}
	switch {
	case c.Priorities < 0:
		bad("priorities %d: must be >= 1", c.Priorities)
	case c.Priorities > maxPriorities:
		bad("priorities %d: must be <= %d", c.Priorities, maxPriorities)
	case c.Priorities == 0:
		c.Priorities = 2
	}
	switch {
	case c.AdmissionShare < 0 || c.AdmissionShare > 1:
		bad("admission_share %v: want a share of the deadline budget, above 0 and at most 1", c.AdmissionShare)
	case c.AdmissionShare == 0:
		c.AdmissionShare = 0.8
	}
	if n := len(c.BucketRunTimes); n > 0 {
		if n != len(c.Buckets) {
			bad("bucket_run_times %v: has %d entries, want one per bucket of %v", c.BucketRunTimes, n, c.Buckets)
		} else {
			c.BucketRunTimes = slices.Clone(c.BucketRunTimes)
			for _, d := range c.BucketRunTimes {
				if d < 0 {
					bad("bucket_run_times %v: entry %v must be >= 0", c.BucketRunTimes, d)
					break
				}
			}
		}
	}
	return c, errors.Join(errs...)
}

// defaultBuckets returns the powers of two below max, then max.
func defaultBuckets(max int) []int {
	var b []int
	for n := 1; n < max; n *= 2 {
		b = append(b, n)
	}
	return append(b, max)
}

// sizeBuckets returns the histogram bounds for inferd_batcher_batch_size:
// 1, 2, 4, ... below max, then max.
func sizeBuckets(max int) []float64 {
	var b []float64
	for _, n := range defaultBuckets(max) {
		b = append(b, float64(n))
	}
	return b
}

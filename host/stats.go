package host

import (
	"sync/atomic"
	"time"

	"github.com/inferd/inferd/kserve"
)

// A model's statistics, as Triton's statistics extension reports them
// (server/triton.go serves them); the counters are atomics.

// durStat is a count and its cumulative duration.
type durStat struct{ count, ns atomic.Uint64 }

func (d *durStat) add(t time.Duration) {
	d.count.Add(1)
	d.ns.Add(uint64(max(t, 0)))
}

func (d *durStat) value() kserve.StatDuration {
	return kserve.StatDuration{Count: d.count.Load(), Ns: d.ns.Load()}
}

// modelStats are one model's counters since it was loaded.
type modelStats struct {
	success, fail, queue         durStat
	computeInput, computeInfer   durStat
	computeOutput                durStat
	cacheHit, cacheMiss          durStat       // the cache's own time: hashing, lookup, insertion
	inferences, executions, last atomic.Uint64 // last: unix ms of the last success
	// batches[n] times the executions of n rows, 1..max_batch.
	batches []batchStat
}

type batchStat struct{ input, infer, output durStat }

// batchTimes is when a batch's phases ended, stamped by the runner into
// every job of the batch.
type batchTimes struct {
	start, inputDone, inferDone, outputDone time.Time
}

func newModelStats(maxBatch int) *modelStats {
	return &modelStats{batches: make([]batchStat, maxBatch+1)}
}

// executed records one batch run of rows rows.
func (s *modelStats) executed(rows int, t *batchTimes) {
	s.executions.Add(1)
	if rows > 0 && rows < len(s.batches) {
		b := &s.batches[rows]
		b.input.add(t.inputDone.Sub(t.start))
		b.infer.add(t.inferDone.Sub(t.inputDone))
		b.output.add(t.outputDone.Sub(t.inferDone))
	}
}

// finished records a request that arrived at start, with err from the
// batcher; t is its batch's times when it ran.
func (s *modelStats) finished(start time.Time, rows int, enqueued time.Time, t *batchTimes, err error) {
	now := time.Now()
	if err != nil {
		s.fail.add(now.Sub(start))
		return
	}
	s.success.add(now.Sub(start))
	s.queue.add(t.start.Sub(enqueued))
	s.computeInput.add(t.inputDone.Sub(t.start))
	s.computeInfer.add(t.inferDone.Sub(t.inputDone))
	s.computeOutput.add(t.outputDone.Sub(t.inferDone))
	s.inferences.Add(uint64(rows))
	s.last.Store(uint64(now.UnixMilli()))
}

// Submit runs j through the batcher, blocking until its outputs are filled
// or it failed, and records it in the statistics; start is when the
// request arrived. The error is the batcher's (an *httperr.Error matching
// batcher.ErrOverloaded, ErrDeadlineExceeded, ErrClosed, ...) or the
// runner's.
func (m *Model) Submit(j *Job, start time.Time) error {
	err := m.batcher.Submit(&j.req)
	m.stats.finished(start, j.rows, j.req.Enqueued(), &j.times, err)
	return err
}

// Statistics are the model's counters since it was opened, in Triton's
// statistics extension's terms.
func (m *Model) Statistics() kserve.ModelStatistics {
	s := m.stats
	out := kserve.ModelStatistics{
		Name: m.Name, Version: "1",
		LastInference:  s.last.Load(),
		InferenceCount: s.inferences.Load(),
		ExecutionCount: s.executions.Load(),
		InferenceStats: kserve.InferenceStats{
			Success: s.success.value(), Fail: s.fail.value(), Queue: s.queue.value(),
			ComputeInput: s.computeInput.value(), ComputeInfer: s.computeInfer.value(),
			ComputeOutput: s.computeOutput.value(),
			CacheHit:      s.cacheHit.value(), CacheMiss: s.cacheMiss.value(),
		},
		BatchStats: []kserve.BatchStats{},
	}
	for n := 1; n < len(s.batches); n++ {
		b := &s.batches[n]
		if b.infer.count.Load() == 0 {
			continue
		}
		out.BatchStats = append(out.BatchStats, kserve.BatchStats{BatchSize: n,
			ComputeInput: b.input.value(), ComputeInfer: b.infer.value(), ComputeOutput: b.output.value()})
	}
	return out
}

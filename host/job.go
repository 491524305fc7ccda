package host

import (
	"sync"
	"time"

	"github.com/inferd/inferd/batcher"
)

// Job is one request's journey through the batcher: its input rows, the
// buffers its output rows are copied into, and the batcher's handle. Jobs
// are pooled per model (GetJob, PutJob), so steady-state requests allocate
// no buffers.
type Job struct {
	req  batcher.Request
	rows int
	in   [][]byte // per input: rows*inBytes[i], contiguous
	out  [][]byte // per output: rows*outBytes[i], filled by the runner
	// shapes per output: [rows, row dims...], for the response; the
	// file's shape for an unbatched model
	shapes  [][]int64
	own     [][]byte   // input buffers the job owns (images), reused
	inBytes []int      // the model's row bytes per input
	times   batchTimes // stamped by the runner for the statistics
}

func (m *Model) newJob() *Job {
	j := &Job{
		in:      make([][]byte, len(m.inBytes)),
		out:     make([][]byte, len(m.outBytes)),
		own:     make([][]byte, len(m.inBytes)),
		inBytes: m.inBytes,
	}
	for _, t := range m.session.Outputs() {
		j.shapes = append(j.shapes, append([]int64(nil), t.Shape...))
	}
	j.req.Payload = j
	return j
}

// GetJob returns a job for a request of rows rows (1..MaxBatch; 1, the
// whole tensors, for an unbatched model), at
// priority 0 with the default timeout; PutJob gives it back once the
// response no longer needs its outputs.
func (m *Model) GetJob(rows int) *Job {
	j := m.jobs.Get().(*Job)
	j.rows = rows
	j.req.Rows = rows
	j.req.Priority = 0
	j.req.Timeout = 0
	for i, rb := range m.outBytes {
		j.out[i] = grow(j.out[i], rows*rb)
		if m.session.Batched() {
			j.shapes[i][0] = int64(rows)
		}
	}
	return j
}

// PutJob returns j to the model's pool.
func (m *Model) PutJob(j *Job) {
	clear(j.in)
	m.jobs.Put(j)
}

// SetInput makes b, rows × the input's row bytes in the model's layout,
// input i of the job. The job reads it until Submit returns; the caller
// keeps it alive that long.
func (j *Job) SetInput(i int, b []byte) { j.in[i] = b }

// OwnInput returns a buffer of rows × the input's row bytes that the job
// keeps for input i (reused across requests), for the caller to fill, as
// a decoded image is.
func (j *Job) OwnInput(i int) []byte {
	j.own[i] = grow(j.own[i], j.rows*j.inBytes[i])
	j.in[i] = j.own[i]
	return j.own[i]
}

// Output is output i after Submit: rows × the output's row bytes.
func (j *Job) Output(i int) []byte { return j.out[i] }

// OutputShape is output i's shape after Submit: [rows, row dims...], or
// the file's shape for an unbatched model.
func (j *Job) OutputShape(i int) []int64 { return j.shapes[i] }

// SetPriority sets the request's priority level (0 highest).
func (j *Job) SetPriority(p int) { j.req.Priority = p }

// SetTimeout sets the request's deadline budget (0: the batcher's
// default; a timeout may shorten it, never lengthen).
func (j *Job) SetTimeout(d time.Duration) { j.req.Timeout = d }

// Timing is where a served request's time went in the batcher: waiting
// for its batch, and the batch's run (copies in, inference, copies out).
func (j *Job) Timing() (queue, compute time.Duration) {
	return j.times.start.Sub(j.req.Enqueued()), j.times.outputDone.Sub(j.times.start)
}

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

// runner runs batches on the model's sessions: it copies each request's
// rows into the lease's input tensors at consecutive offsets (stage:
// spread over the CPUs for large batches), runs, and copies each
// request's output rows back. There is one runner per session instance.
type runner struct {
	m    *Model
	srcs sync.Pool // *[][]byte: the pieces of one input, reused (Run runs on InFlight goroutines)
}

var _ batcher.Runner = (*runner)(nil)

func (r *runner) Run(b *batcher.Batch) error {
	m := r.m
	var t batchTimes
	t.start = time.Now()
	// The batcher chose the bucket among the sessions' own.
	l, err := m.session.Acquire(b.Bucket)
	if err != nil {
		return err
	}
	defer l.Release()
	sp, _ := r.srcs.Get().(*[][]byte)
	if sp == nil {
		sp = new([][]byte)
	}
	for i := range m.inBytes {
		srcs := (*sp)[:0]
		for _, rq := range b.Requests {
			srcs = append(srcs, rq.Payload.(*Job).in[i])
		}
		stage(l.Input(i), srcs)
		clear(srcs)
		*sp = srcs[:0]
	}
	r.srcs.Put(sp)
	t.inputDone = time.Now()
	if err := l.Run(); err != nil {
		return err
	}
	t.inferDone = time.Now()
	row := 0
	for _, rq := range b.Requests {
		j := rq.Payload.(*Job)
		for i, rb := range m.outBytes {
			copy(j.out[i], l.Output(i)[row*rb:(row+j.rows)*rb])
		}
		row += j.rows
	}
	t.outputDone = time.Now()
	for _, rq := range b.Requests {
		rq.Payload.(*Job).times = t
	}
	m.stats.executed(b.Rows, &t)
	return nil
}

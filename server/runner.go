package server

import (
	"fmt"
	"time"

	"github.com/inferd/inferd/batcher"
)

// job is one request's journey through the batcher: its input rows, the
// buffers its output rows are copied into, and the batcher's handle. Jobs
// are pooled per model, so steady-state requests allocate no buffers.
type job struct {
	req  batcher.Request
	rows int
	in   [][]byte // per input: rows*inBytes[i], contiguous
	out  [][]byte // per output: rows*outBytes[i], filled by the runner
	// shapes per output: [rows, row dims...], for the response
	shapes [][]int64
	own    [][]byte   // input buffers the job owns (images), reused
	times  batchTimes // stamped by the runner for the statistics
}

func (m *Model) newJob() *job {
	j := &job{
		in:  make([][]byte, len(m.inBytes)),
		out: make([][]byte, len(m.outBytes)),
		own: make([][]byte, len(m.inBytes)),
	}
	for _, t := range m.session.Outputs() {
		j.shapes = append(j.shapes, append([]int64(nil), t.Shape...))
	}
	j.req.Payload = j
	return j
}

func (m *Model) getJob(rows int) *job {
	j := m.jobs.Get().(*job)
	j.rows = rows
	j.req.Rows = rows
	j.req.Priority = 0
	j.req.Timeout = 0
	for i, rb := range m.outBytes {
		j.out[i] = grow(j.out[i], rows*rb)
		j.shapes[i][0] = int64(rows)
	}
	return j
}

func (m *Model) putJob(j *job) {
	clear(j.in)
	m.jobs.Put(j)
}

// ownInput returns a buffer of n bytes the job keeps for input i.
func (j *job) ownInput(i, n int) []byte {
	j.own[i] = grow(j.own[i], n)
	j.in[i] = j.own[i]
	return j.own[i]
}

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

// runner runs batches on the model's sessions: it copies each request's
// rows into the lease's input tensors at consecutive offsets, runs, and
// copies each request's output rows back.
type runner struct{ m *Model }

var _ batcher.Runner = (*runner)(nil)

func (r *runner) Run(b *batcher.Batch) error {
	m := r.m
	var t batchTimes
	t.start = time.Now()
	l, err := m.session.Acquire(b.Rows)
	if err != nil {
		return err
	}
	defer l.Release()
	if l.Bucket() != b.Bucket {
		return fmt.Errorf("batch bucket %d but session bucket %d: batcher and sessions disagree", b.Bucket, l.Bucket())
	}
	row := 0
	for _, rq := range b.Requests {
		j := rq.Payload.(*job)
		for i, rb := range m.inBytes {
			copy(l.Input(i)[row*rb:], j.in[i])
		}
		row += j.rows
	}
	t.inputDone = time.Now()
	if err := l.Run(); err != nil {
		return err
	}
	t.inferDone = time.Now()
	row = 0
	for _, rq := range b.Requests {
		j := rq.Payload.(*job)
		for i, rb := range m.outBytes {
			copy(j.out[i], l.Output(i)[row*rb:(row+j.rows)*rb])
		}
		row += j.rows
	}
	t.outputDone = time.Now()
	for _, rq := range b.Requests {
		rq.Payload.(*job).times = t
	}
	m.stats.executed(b.Rows, &t)
	return nil
}

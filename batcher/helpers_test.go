package batcher

import (
	"bufio"
	"bytes"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

const ms = time.Millisecond

// echoPayload is a request's data for the echo runner: it gets out = f(in)
// for each of its rows.
type echoPayload struct {
	id   int
	in   []float64 // one value per row
	out  []float64
	runs atomic.Int32 // how many times a batch holding it ran
}

func f(x float64) float64 { return 2*x + 1 }

// newEcho builds an echoPayload with rows random-ish inputs.
func newEcho(id, rows int) *echoPayload {
	p := &echoPayload{id: id, in: make([]float64, rows), out: make([]float64, rows)}
	for i := range p.in {
		p.in[i] = float64(id*1000 + i)
	}
	return p
}

// check reports whether p got exactly its own rows back, once.
func (p *echoPayload) check() bool {
	if p.runs.Load() != 1 {
		return false
	}
	for i, x := range p.in {
		if p.out[i] != f(x) {
			return false
		}
	}
	return true
}

// echoRun is what a model runner does: it lays the requests' rows out at
// consecutive offsets of a Bucket-row input, computes the output and copies
// each request's rows back from the same offsets.
func echoRun(bt *Batch) {
	in := make([]float64, bt.Bucket)
	off := 0
	for _, r := range bt.Requests {
		p := r.Payload.(*echoPayload)
		copy(in[off:], p.in)
		off += r.Rows
	}
	out := make([]float64, bt.Bucket)
	for i, x := range in {
		out[i] = f(x)
	}
	off = 0
	for _, r := range bt.Requests {
		p := r.Payload.(*echoPayload)
		copy(p.out, out[off:off+r.Rows])
		p.runs.Add(1)
		off += r.Rows
	}
}

// checkBatch reports the first broken Batch invariant, or "". The FIFO check
// needs a fake clock: on a real one a request can take its timestamp before
// another yet reach the intake lock after it.
func checkBatch(bt *Batch, cfg Config, fifo bool) string {
	rows := 0
	for i, r := range bt.Requests {
		rows += r.Rows
		if i > 0 && r.Priority < bt.Requests[i-1].Priority {
			return "priorities out of order"
		}
		if fifo && i > 0 && r.Priority == bt.Requests[i-1].Priority && r.Enqueued().Before(bt.Requests[i-1].Enqueued()) {
			return "not fifo within a level"
		}
	}
	if rows != bt.Rows {
		return "rows != sum of request rows"
	}
	if rows < 1 || rows > cfg.MaxBatchSize {
		return "rows out of range"
	}
	want := 0
	for _, b := range cfg.Buckets {
		if b >= rows {
			want = b
			break
		}
	}
	if bt.Bucket != want {
		return "wrong bucket"
	}
	return ""
}

// recorder collects what a runner saw.
type recorder struct {
	mu      sync.Mutex
	batches [][]string // payload names per batch, in Run order
	starts  []time.Time
}

func (rc *recorder) add(bt *Batch) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var names []string
	for _, r := range bt.Requests {
		names = append(names, r.Payload.(string))
	}
	rc.batches = append(rc.batches, names)
	rc.starts = append(rc.starts, time.Now())
}

func (rc *recorder) saw(name string) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, b := range rc.batches {
		for _, n := range b {
			if n == name {
				return true
			}
		}
	}
	return false
}

// metricValues parses set's Prometheus text into "name{labels}" -> value.
func metricValues(t *testing.T, set *metrics.Set) map[string]float64 {
	t.Helper()
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	vals := map[string]float64{}
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad metric line %q: %v", line, err)
		}
		vals[line[:i]] = v
	}
	return vals
}

// mustNew is New that fails the test on error.
func mustNew(t *testing.T, cfg Config, r Runner, set *metrics.Set) *Batcher {
	t.Helper()
	b, err := New("m", cfg, r, set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

package loadtest

import (
	"fmt"
	"io"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// progressMinDuration is the shortest run that shows a progress line.
const progressMinDuration = 3 * time.Second

// progress writes "elapsed/duration requests ok% p99-so-far" about once a
// second. It is fed from the result loop, so it needs no goroutine.
type progress struct {
	w        io.Writer
	total    time.Duration
	start    time.Time
	last     time.Time
	requests int
	ok       int
	shown    bool
}

func newProgress(w io.Writer, d time.Duration) *progress {
	if d < progressMinDuration {
		w = nil
	}
	now := time.Now()
	return &progress{w: w, total: d, start: now, last: now}
}

func (p *progress) add(r *vegeta.Result) {
	if p.w == nil {
		return
	}
	p.requests++
	if r.Error == "" && r.Code >= 200 && r.Code < 400 {
		p.ok++
	}
	now := time.Now()
	if now.Sub(p.last) < time.Second {
		return
	}
	p.last = now
	elapsed := now.Sub(p.start)
	fmt.Fprintf(p.w, "\r%5.1fs/%s  %d requests  %.1f/s  %.2f%% ok ",
		elapsed.Seconds(), p.total, p.requests, float64(p.requests)/elapsed.Seconds(), 100*float64(p.ok)/float64(p.requests))
	p.shown = true
}

func (p *progress) done() {
	if p.shown {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

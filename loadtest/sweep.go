package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
)

// Sweep runs cfg once per point: each a rate when byConcurrency is false,
// else a concurrency; every other field is cfg's. It calls each with every
// report as it is made and stops at the first error. The server's metadata
// is read once. cfg.Output receives one gob stream holding every point's
// results, each point under its own attack name (its Report's Mode), and
// cfg.Plot one plot with a series per point.
func Sweep(ctx context.Context, cfg Config, points []float64, byConcurrency bool, each func(*Report) error) error {
	if len(points) == 0 {
		return errors.New("sweep: no points")
	}
	for _, pt := range points {
		if pt <= 0 || byConcurrency && pt != float64(int(pt)) {
			return fmt.Errorf("sweep point %g: want a positive %s", pt, map[bool]string{false: "rate", true: "whole concurrency"}[byConcurrency])
		}
	}
	cfg.Rate, cfg.Concurrency = points[0], 0
	if byConcurrency {
		cfg.Rate, cfg.Concurrency = 0, int(points[0])
	}
	p, err := prepare(ctx, cfg)
	if err != nil {
		return err
	}
	return errors.Join(p.sweep(ctx, points, byConcurrency, each), p.finish())
}

func (p *plan) sweep(ctx context.Context, points []float64, byConcurrency bool, each func(*Report) error) error {
	for _, pt := range points {
		c := p.cfg
		if byConcurrency {
			c.Concurrency = int(pt)
		} else {
			c.Rate = pt
		}
		rep, err := p.attack(ctx, c)
		if err != nil {
			return err
		}
		if err := each(rep); err != nil {
			return err
		}
	}
	return nil
}

// TableWriter writes reports as rows of a fixed-width text table, one per
// report, written as each comes: the text form of a sweep.
type TableWriter struct {
	w      io.Writer
	header bool
}

// NewTableWriter returns a TableWriter on w.
func NewTableWriter(w io.Writer) *TableWriter { return &TableWriter{w: w} }

const tableRow = "%8s %9s %10s %12s %8s %9s %9s %9s %9s %9s %6s %10s %12s  %s\n"

// Write writes r's row, after the header when it is the first.
func (t *TableWriter) Write(r *Report) error {
	if !t.header {
		if _, err := fmt.Fprintf(t.w, tableRow, "load", "requests", "rate/s", "throughput/s", "success",
			"mean", "p50", "p90", "p99", "max", "batch", "queue p99", "compute p99", "rejected"); err != nil {
			return err
		}
		t.header = true
	}
	load := fmt.Sprintf("%g/s", r.TargetRate)
	if r.Concurrency > 0 {
		load = fmt.Sprintf("c=%d", r.Concurrency)
	}
	l := r.Latency
	batch, queue, compute, rejected := "-", "-", "-", "-"
	if s := r.Server; s != nil {
		batch = fmt.Sprintf("%.2f", s.MeanBatch)
		queue, compute = short(s.QueueP99), short(s.ComputeP99)
		rejected = joinCounts(s.Rejected, "%s:%.0f")
	}
	_, err := fmt.Fprintf(t.w, tableRow, load, strconv.FormatUint(r.Requests, 10),
		fmt.Sprintf("%.2f", r.Rate), fmt.Sprintf("%.2f", r.Throughput), fmt.Sprintf("%.2f%%", 100*r.Success),
		short(l.Mean), short(l.P50), short(l.P90), short(l.P99), short(l.Max), batch, queue, compute, rejected)
	return err
}

// short formats d in three significant digits.
func short(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.3gs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.3gms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.3gµs", float64(d)/1e3)
}

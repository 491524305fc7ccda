package main

import (
	"context"
	"encoding/csv"
	"errors"
	"io"
	"time"

	"github.com/inferd/inferd/loadtest"
)

// sweep runs one load per rate or concurrency and prints a row each.
func sweep(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newCommon("sweep", stderr)
	fs := c.fs
	rates := fs.String("rates", "", "open loop: comma-separated `rates`, e.g. 10,20,40")
	concs := fs.String("concurrencies", "", "closed loop: comma-separated `concurrencies`, e.g. 1,8,32")
	fs.DurationVar(&c.cfg.Duration, "duration", 10*time.Second, "how long each point sends requests")
	fs.StringVar(&c.output, "output", "", "write every point's raw results to `FILE`: one vegeta gob stream, each point under its own attack name (the row's mode); `vegeta report FILE` sums all points, `vegeta plot FILE` draws a series per point, `vegeta encode FILE` gives every result")
	if err := c.parse(args); err != nil {
		return usageError(stderr, err)
	}
	var (
		points []float64
		err    error
	)
	switch {
	case (*rates == "") == (*concs == ""):
		return usageError(stderr, errors.New("sweep needs exactly one of -rates and -concurrencies"))
	case *rates != "":
		points, err = parseList("rates", *rates)
	default:
		points, err = parseList("concurrencies", *concs)
	}
	if err != nil {
		return usageError(stderr, err)
	}
	closeResults, err := c.openResults()
	if err != nil {
		return fail(stderr, err)
	}
	defer closeResults()
	if isTerminal(stderr) {
		c.cfg.Progress = stderr
	}
	each := rowWriter(stdout, c.format)
	if err := loadtest.Sweep(ctx, c.cfg, points, *concs != "", each); err != nil {
		return fail(stderr, err)
	}
	if err := closeResults(); err != nil {
		return fail(stderr, err)
	}
	return exitOK
}

// rowWriter returns a function writing reports as table rows, JSON lines
// or CSV rows under one header.
func rowWriter(w io.Writer, format string) func(*loadtest.Report) error {
	switch format {
	case loadtest.FormatJSON:
		return func(r *loadtest.Report) error { return r.WriteJSON(w) }
	case loadtest.FormatCSV:
		cw := csv.NewWriter(w)
		header := false
		return func(r *loadtest.Report) error {
			if !header {
				cw.Write(loadtest.CSVHeader)
				header = true
			}
			cw.Write(r.CSVRecord())
			cw.Flush()
			return cw.Error()
		}
	}
	return loadtest.NewTableWriter(w).Write
}

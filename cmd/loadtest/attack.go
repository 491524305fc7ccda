package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// attack runs one load and prints its report.
func attack(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newCommon("attack", stderr)
	fs := c.fs
	fs.Float64Var(&c.cfg.Rate, "rate", 0, "open loop: `N` requests per second (a ramp's start, a sine's mean)")
	fs.IntVar(&c.cfg.Concurrency, "concurrency", 0, "closed loop: this many requests in flight")
	fs.DurationVar(&c.cfg.Duration, "duration", 10*time.Second, "how long to send requests")
	fs.StringVar(&c.cfg.Pacer, "pacer", "constant", "open-loop pacer: constant, ramp or sine")
	fs.Float64Var(&c.cfg.RampTo, "ramp-to", 0, "ramp: final rate (default 2x -rate)")
	fs.DurationVar(&c.cfg.SinePeriod, "sine-period", 0, "sine: period (default -duration/2)")
	fs.Float64Var(&c.cfg.SineAmp, "sine-amp", 0, "sine: amplitude in requests/s (default -rate/2)")
	fs.StringVar(&c.output, "output", "", "write raw results to `FILE` (vegeta gob; `vegeta report FILE` reads it)")
	plotPath := fs.String("plot", "", "write an HTML latency plot to `FILE`")
	if err := c.parse(args); err != nil {
		return usageError(stderr, err)
	}
	if c.cfg.Rate == 0 && c.cfg.Concurrency == 0 {
		return usageError(stderr, errors.New("attack needs -rate (open loop) or -concurrency (closed loop)"))
	}
	closeResults, err := c.openResults()
	if err != nil {
		return fail(stderr, err)
	}
	defer closeResults()
	if *plotPath != "" {
		f, err := os.Create(*plotPath)
		if err != nil {
			return fail(stderr, fmt.Errorf("plot file: %w", err))
		}
		defer f.Close()
		c.cfg.Plot = f
	}
	if isTerminal(stderr) {
		c.cfg.Progress = stderr
	}
	rep, err := c.cfg.Run(ctx)
	if rep != nil {
		if werr := rep.Write(stdout, c.format); werr != nil && err == nil {
			err = werr
		}
	}
	if err != nil {
		return fail(stderr, err)
	}
	if err := closeResults(); err != nil {
		return fail(stderr, err)
	}
	return exitOK
}

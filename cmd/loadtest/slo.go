package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	"github.com/inferd/inferd/loadtest"
)

// slo searches for the highest rate meeting a p99 and error target.
func slo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newCommon("slo", stderr)
	fs := c.fs
	var s loadtest.SLO
	fs.DurationVar(&s.P99, "p99", 0, "p99 latency target, e.g. 100ms (required)")
	fs.Float64Var(&s.MaxErrorRate, "max-error-rate", 0.01, "highest acceptable fraction of failed requests")
	fs.Float64Var(&s.StartRate, "start-rate", 10, "first rate tried, requests/s")
	fs.Float64Var(&s.MaxRate, "max-rate", 100000, "highest rate tried, requests/s")
	fs.Float64Var(&s.MinRate, "min-rate", 0, "lowest rate tried when the start rate fails (default start-rate/64)")
	fs.DurationVar(&s.Window, "window", loadtest.DefaultWindow, "one measurement window")
	fs.IntVar(&s.MaxWindows, "max-windows", 4, "most windows per rate while waiting for two that agree")
	fs.Float64Var(&s.Stability, "stability", 0.10, "two consecutive windows agree when p99 and throughput differ by less than this fraction")
	fs.Float64Var(&s.Precision, "precision", 0.05, "stop bisecting when the bracket is narrower than this fraction of the rate")
	if err := c.parse(args); err != nil {
		return usageError(stderr, err)
	}
	if s.P99 <= 0 {
		return usageError(stderr, fmt.Errorf("slo needs -p99, e.g. -p99 100ms"))
	}
	var cw *csv.Writer
	each := func(t loadtest.Trial) {
		switch c.format {
		case loadtest.FormatText:
			r := t.Report
			verdict := "fail"
			if t.Pass {
				verdict = "pass"
			}
			stable := "stable"
			if !t.Stable {
				stable = "not stable"
			}
			fmt.Fprintf(stdout, "rate %g/s: %s  p99 %s  errors %.2f%%  throughput %.2f/s  (windows %d, %s)\n",
				t.Rate, verdict, r.Latency.P99, 100*r.ErrorRate(), r.Throughput, t.Windows, stable)
		case loadtest.FormatCSV:
			if cw == nil {
				cw = csv.NewWriter(stdout)
				cw.Write(append([]string{"trial_rate", "pass", "stable", "windows"}, loadtest.CSVHeader...))
			}
			cw.Write(append([]string{strconv.FormatFloat(t.Rate, 'f', -1, 64), strconv.FormatBool(t.Pass),
				strconv.FormatBool(t.Stable), strconv.Itoa(t.Windows)}, t.Report.CSVRecord()...))
			cw.Flush()
		}
	}
	if isTerminal(stderr) {
		c.cfg.Progress = stderr
	}
	res, err := loadtest.FindSLO(ctx, c.cfg, s, each)
	if err != nil {
		return fail(stderr, err)
	}
	switch c.format {
	case loadtest.FormatText:
		fmt.Fprintf(stdout, "slo rate: %g/s (p99 <= %s, errors <= %g%%)\n", res.Rate, res.P99, 100*res.MaxErrorRate)
		if res.Best != nil {
			res.Best.WriteText(stdout)
		}
	case loadtest.FormatJSON:
		b, err := json.Marshal(res)
		if err != nil {
			return fail(stderr, err)
		}
		fmt.Fprintf(stdout, "%s\n", b)
	}
	return exitOK
}

package loadtest

import (
	"context"
	"errors"
	"fmt"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// replicaHeader names the inferd replica that answered; counting its
// values tells a view of one replica from a view of the whole load.
const replicaHeader = "X-Inferd-Replica"

// Run checks the configuration, reads the model's metadata from the server,
// sends the load and returns the report. Bad configuration, an unreachable
// server and an unknown model fail before any load is sent.
func (c Config) Run(ctx context.Context) (*Report, error) {
	p, err := prepare(ctx, c)
	if err != nil {
		return nil, err
	}
	defer p.grpc.close()
	rep, err := p.attack(ctx, p.cfg)
	if rep != nil {
		// An interrupted run still has results to plot.
		err = errors.Join(err, p.finish())
	}
	return rep, err
}

// attack runs one attack with cfg's load shape; the targets and the sinks
// (results file, plot) are the plan's.
func (p *plan) attack(ctx context.Context, cfg Config) (*Report, error) {
	pacer, workers, maxWorkers := cfg.pacer()
	var before serverSnapshot
	var scrapeErr error
	if !cfg.NoServerMetrics {
		before, scrapeErr = snapshot(ctx, p.probes, cfg.Model)
	}

	var (
		metrics  vegeta.Metrics
		prog     = newProgress(cfg.Progress, cfg.Duration)
		replicas = map[string]struct{}{}
	)
	var results <-chan *vegeta.Result
	var stopAttack func()
	if p.grpc != nil {
		results, stopAttack = p.grpc.attack(pacer, workers, maxWorkers, cfg.Duration, cfg.Timeout, p.attackName(cfg.mode()))
	} else {
		atk := vegeta.NewAttacker(
			vegeta.Workers(workers),
			vegeta.MaxWorkers(maxWorkers),
			vegeta.Timeout(cfg.Timeout),
			vegeta.KeepAlive(true),
			vegeta.Connections(int(maxWorkers)),
			vegeta.Redirects(vegeta.NoFollow),
			vegeta.TLSConfig(p.tls),
		)
		results = atk.Attack(p.targeter, pacer, cfg.Duration, p.attackName(cfg.mode()))
		stopAttack = func() { atk.Stop() }
	}
	stop := context.AfterFunc(ctx, stopAttack)
	defer stop()
	var sinkErr error
	for r := range results {
		metrics.Add(r)
		prog.add(r)
		if id := r.Headers.Get(replicaHeader); id != "" {
			replicas[id] = struct{}{}
		}
		if p.enc != nil && sinkErr == nil {
			sinkErr = p.enc.Encode(r)
		}
		if p.plot != nil && sinkErr == nil {
			sinkErr = p.plot.Add(r)
		}
	}
	metrics.Close()
	prog.done()
	if sinkErr != nil {
		return nil, fmt.Errorf("writing results: %w", sinkErr)
	}
	rep := newReport(cfg, &metrics)
	rep.Replicas = len(replicas)
	if !cfg.NoServerMetrics {
		if scrapeErr == nil {
			var after serverSnapshot
			if after, scrapeErr = snapshot(context.WithoutCancel(ctx), p.probes, cfg.Model); scrapeErr == nil {
				rep.Server, scrapeErr = after.view(before, cfg.Model)
			}
		}
		if scrapeErr != nil {
			rep.ServerError = scrapeErr.Error()
		}
	}
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("run interrupted: %w", err)
	}
	return rep, nil
}

// pacer returns the vegeta pacer and worker counts for cfg's load shape. A
// closed loop is vegeta's rate 0 with exactly Concurrency workers.
func (c Config) pacer() (vegeta.Pacer, uint64, uint64) {
	if c.Concurrency > 0 {
		n := uint64(c.Concurrency)
		return vegeta.Rate{Freq: 0, Per: time.Second}, n, n
	}
	max := uint64(c.MaxWorkers)
	workers := min(max, vegeta.DefaultWorkers)
	perSecond := func(r float64) vegeta.Rate {
		// vegeta rates are integer counts per period: keep three digits.
		return vegeta.Rate{Freq: int(r * 1000), Per: time.Second * 1000}
	}
	switch c.Pacer {
	case PacerRamp:
		return vegeta.LinearPacer{StartAt: perSecond(c.Rate), Slope: (c.RampTo - c.Rate) / c.Duration.Seconds()}, workers, max
	case PacerSine:
		return vegeta.SinePacer{Period: c.SinePeriod, Mean: perSecond(c.Rate), Amp: perSecond(c.SineAmp)}, workers, max
	}
	return perSecond(c.Rate), workers, max
}

// target names what is hit, for titles and reports.
func (c Config) target() string {
	if c.Protocol == ProtocolGRPC {
		return "grpc://" + c.grpcAddr() + " " + c.Model + " " + string(c.Endpoint)
	}
	if c.Endpoint == Recognize {
		return c.URL + " recognize (model " + c.Model + ")"
	}
	return c.URL + " " + c.Model + " " + string(c.Endpoint)
}

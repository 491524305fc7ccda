package loadtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"time"

	"github.com/inferd/inferd/kserve"
)

// The server view from the statistics extension (Triton's, which inferd
// serves too): for servers without inferd's Prometheus metrics, such as
// Triton itself, whose /metrics is on another port. It has counts and
// cumulative times, so the view has means and no quantiles.

// fetchStats reads the model's statistics; a server may list several
// versions: their counters are added up.
func fetchStats(ctx context.Context, pr *prober, model string) (*kserve.ModelStatistics, error) {
	body, err := get(ctx, pr, "/v2/models/"+url.PathEscape(model)+"/stats")
	if err != nil {
		return nil, fmt.Errorf("model statistics: %w", err)
	}
	var resp kserve.StatisticsResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("model statistics: %w", err)
	}
	if len(resp.ModelStats) == 0 {
		return nil, fmt.Errorf("model statistics: none for model %q", model)
	}
	sum := &kserve.ModelStatistics{Name: model}
	for _, s := range resp.ModelStats {
		sum.InferenceCount += s.InferenceCount
		sum.ExecutionCount += s.ExecutionCount
		for _, p := range []struct{ dst, src *kserve.StatDuration }{
			{&sum.InferenceStats.Success, &s.InferenceStats.Success},
			{&sum.InferenceStats.Fail, &s.InferenceStats.Fail},
			{&sum.InferenceStats.Queue, &s.InferenceStats.Queue},
			{&sum.InferenceStats.ComputeInfer, &s.InferenceStats.ComputeInfer},
		} {
			p.dst.Count += p.src.Count
			p.dst.Ns += p.src.Ns
		}
	}
	return sum, nil
}

// meanDelta is the mean duration of what was added between a and b.
func meanDelta(a, b kserve.StatDuration) time.Duration {
	if b.Count <= a.Count {
		return 0
	}
	return time.Duration((b.Ns - a.Ns) / (b.Count - a.Count))
}

// statsView computes the server view between two statistics snapshots.
func statsView(before, after *kserve.ModelStatistics) *ServerView {
	b, a := &before.InferenceStats, &after.InferenceStats
	v := &ServerView{
		Source:      SourceStatistics,
		Requests:    float64(a.Success.Count + a.Fail.Count - b.Success.Count - b.Fail.Count),
		Batches:     float64(after.ExecutionCount - before.ExecutionCount),
		QueueMean:   meanDelta(b.Queue, a.Queue),
		ComputeMean: meanDelta(b.ComputeInfer, a.ComputeInfer),
		Rejected:    map[string]float64{},
	}
	if v.Batches > 0 {
		v.MeanBatch = float64(after.InferenceCount-before.InferenceCount) / v.Batches
	}
	if d := a.Fail.Count - b.Fail.Count; d > 0 {
		v.Rejected["failed"] = float64(d)
	}
	return v
}

// serverSnapshot is the server's state at one moment: inferd's metrics
// when it has them for the model, else its statistics.
type serverSnapshot struct {
	metrics metricsSnapshot
	stats   *kserve.ModelStatistics
}

// snapshot reads the server's metrics, falling back to the statistics
// extension when /metrics is missing or has no batcher metrics for model.
func snapshot(ctx context.Context, pr *prober, model string) (serverSnapshot, error) {
	m, err := scrape(ctx, pr)
	if err == nil && m.has(metricBatches, model) {
		return serverSnapshot{metrics: m}, nil
	}
	if err == nil {
		err = fmt.Errorf("server metrics: no %s for model %q", metricBatches, model)
	}
	if model == "" {
		return serverSnapshot{}, err
	}
	st, serr := fetchStats(ctx, pr, model)
	if serr != nil {
		return serverSnapshot{}, fmt.Errorf("%w; %w", err, serr)
	}
	return serverSnapshot{stats: st}, nil
}

// view computes the server view from before to s.
func (s serverSnapshot) view(before serverSnapshot, model string) (*ServerView, error) {
	switch {
	case s.metrics != nil && before.metrics != nil:
		return serverView(before.metrics, s.metrics, model), nil
	case s.stats != nil && before.stats != nil:
		return statsView(before.stats, s.stats), nil
	}
	return nil, fmt.Errorf("server view: the server's metrics changed kind during the run")
}

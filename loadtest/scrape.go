package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// sample is one line of Prometheus text exposition.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// metricsSnapshot is one scrape of /metrics.
type metricsSnapshot []sample

// scrape fetches and parses pr's base/metrics.
func scrape(ctx context.Context, pr *prober) (metricsSnapshot, error) {
	body, err := get(ctx, pr, "/metrics")
	if err != nil {
		return nil, fmt.Errorf("server metrics: %w", err)
	}
	return parseMetrics(body)
}

// parseMetrics parses the Prometheus text format; comments are skipped.
func parseMetrics(b []byte) (metricsSnapshot, error) {
	var out metricsSnapshot
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		s, err := parseSample(line)
		if err != nil {
			return nil, fmt.Errorf("server metrics line %d: %w", n, err)
		}
		out = append(out, s)
	}
	return out, sc.Err()
}

func parseSample(line string) (sample, error) {
	s := sample{labels: map[string]string{}}
	rest := line
	if i := strings.IndexAny(line, "{ "); i < 0 {
		return s, fmt.Errorf("no value in %q", line)
	} else {
		s.name, rest = line[:i], line[i:]
	}
	if rest[0] == '{' {
		rest = rest[1:]
		for {
			rest = strings.TrimLeft(rest, " ,")
			if strings.HasPrefix(rest, "}") {
				rest = rest[1:]
				break
			}
			eq := strings.Index(rest, `="`)
			if eq < 0 {
				return s, fmt.Errorf("bad labels in %q", line)
			}
			key := rest[:eq]
			rest = rest[eq+2:]
			var val strings.Builder
			i := 0
			for ; i < len(rest) && rest[i] != '"'; i++ {
				if rest[i] == '\\' && i+1 < len(rest) {
					i++
					if rest[i] == 'n' {
						val.WriteByte('\n')
						continue
					}
				}
				val.WriteByte(rest[i])
			}
			if i == len(rest) {
				return s, fmt.Errorf("unterminated label value in %q", line)
			}
			s.labels[key] = val.String()
			rest = rest[i+1:]
		}
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return s, fmt.Errorf("no value in %q", line)
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return s, fmt.Errorf("value in %q: %w", line, err)
	}
	s.value = v
	return s, nil
}

// sum adds the values of the series called name whose labels include
// every pair in match.
func (m metricsSnapshot) sum(name string, match map[string]string) float64 {
	total := 0.0
	for _, s := range m {
		if s.name == name && matches(s.labels, match) {
			total += s.value
		}
	}
	return total
}

func matches(labels, match map[string]string) bool {
	for k, v := range match {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// bucket is one cumulative histogram bucket.
type bucket struct {
	le    float64
	count float64
}

// buckets returns the cumulative buckets of histogram name (summed over
// series matching match), sorted by le.
func (m metricsSnapshot) buckets(name string, match map[string]string) []bucket {
	byLE := map[float64]float64{}
	for _, s := range m {
		if s.name != name+"_bucket" || !matches(s.labels, match) {
			continue
		}
		le, err := strconv.ParseFloat(s.labels["le"], 64)
		if err != nil {
			continue
		}
		byLE[le] += s.value
	}
	out := make([]bucket, 0, len(byLE))
	for le, c := range byLE {
		out = append(out, bucket{le, c})
	}
	slices.SortFunc(out, func(a, b bucket) int { return cmpFloat(a.le, b.le) })
	return out
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// deltaBuckets returns after - before, bucket by bucket.
func deltaBuckets(before, after []bucket) []bucket {
	prev := map[float64]float64{}
	for _, b := range before {
		prev[b.le] = b.count
	}
	out := make([]bucket, len(after))
	for i, b := range after {
		out[i] = bucket{b.le, b.count - prev[b.le]}
	}
	return out
}

// quantile estimates the q-quantile from cumulative buckets the way
// Prometheus's histogram_quantile does: find the bucket holding rank
// q*total and interpolate linearly inside it, the first bucket starting at
// 0; a rank in the +Inf bucket gives the highest finite bound. NaN when
// the buckets are empty.
func quantile(q float64, bs []bucket) float64 {
	if len(bs) == 0 {
		return math.NaN()
	}
	total := bs[len(bs)-1].count
	if total <= 0 {
		return math.NaN()
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for i, b := range bs {
		if b.count >= rank {
			if math.IsInf(b.le, 1) {
				if i == 0 {
					return math.NaN()
				}
				return bs[i-1].le
			}
			in := b.count - below
			if in <= 0 {
				return b.le
			}
			return lower + (b.le-lower)*(rank-below)/in
		}
		lower, below = b.le, b.count
	}
	return bs[len(bs)-1].le
}

// ServerView is what the server's own metrics say about the window of a
// run: deltas of inferd's counters and histograms between a scrape just
// before the first request and one just after the last answer.
type ServerView struct {
	// Source is where the view comes from: SourceMetrics (inferd's
	// Prometheus metrics: quantiles) or SourceStatistics (the statistics
	// extension, /v2/models/M/stats, as Triton serves it: means only).
	Source string `json:"source"`
	// Requests is the number of HTTP requests the server counted for the
	// model (every endpoint and code).
	Requests float64 `json:"requests"`
	// Batches is the number of batches the model's batcher dispatched.
	Batches float64 `json:"batches"`
	// MeanBatch is rows per batch: the batch size histogram's sum over its
	// count.
	MeanBatch float64 `json:"mean_batch"`
	// QueueP50 and QueueP99 are the queue wait quantiles (Submit to
	// dispatch) from the histogram's bucket deltas.
	QueueP50 time.Duration `json:"queue_p50_ns"`
	QueueP99 time.Duration `json:"queue_p99_ns"`
	// ComputeP50 and ComputeP99 are the batch run time quantiles.
	ComputeP50 time.Duration `json:"compute_p50_ns"`
	ComputeP99 time.Duration `json:"compute_p99_ns"`
	// QueueMean and ComputeMean are the mean queue wait and batch run
	// time (per request in the statistics: a request is charged its whole
	// batch's run time).
	QueueMean   time.Duration `json:"queue_mean_ns"`
	ComputeMean time.Duration `json:"compute_mean_ns"`
	// Rejected counts requests the batcher rejected, by reason; reasons
	// with none are left out.
	Rejected map[string]float64 `json:"rejected"`
}

// Sources of a ServerView.
const (
	SourceMetrics    = "metrics"
	SourceStatistics = "statistics"
)

// Metric names read from the server.
const (
	metricBatchSize = "inferd_batcher_batch_size"
	metricQueueWait = "inferd_batcher_queue_wait_seconds"
	metricRun       = "inferd_batcher_run_seconds"
	metricBatches   = "inferd_batcher_batches_total"
	metricRejected  = "inferd_batcher_requests_rejected_total"
	metricRequests  = "inferd_http_requests_total"
)

// serverView computes the view of model between two scrapes.
func serverView(before, after metricsSnapshot, model string) *ServerView {
	m := map[string]string{}
	if model != "" {
		m["model"] = model
	}
	v := &ServerView{
		Source:   SourceMetrics,
		Requests: after.sum(metricRequests, m) - before.sum(metricRequests, m),
		Batches:  after.sum(metricBatches, m) - before.sum(metricBatches, m),
		Rejected: map[string]float64{},
	}
	rows := after.sum(metricBatchSize+"_sum", m) - before.sum(metricBatchSize+"_sum", m)
	if n := after.sum(metricBatchSize+"_count", m) - before.sum(metricBatchSize+"_count", m); n > 0 {
		v.MeanBatch = rows / n
	}
	q := deltaBuckets(before.buckets(metricQueueWait, m), after.buckets(metricQueueWait, m))
	r := deltaBuckets(before.buckets(metricRun, m), after.buckets(metricRun, m))
	v.QueueP50, v.QueueP99 = seconds(quantile(.5, q)), seconds(quantile(.99, q))
	v.ComputeP50, v.ComputeP99 = seconds(quantile(.5, r)), seconds(quantile(.99, r))
	v.QueueMean = meanOf(before, after, metricQueueWait, m)
	v.ComputeMean = meanOf(before, after, metricRun, m)
	reasons := map[string]bool{}
	for _, s := range after {
		if s.name == metricRejected && matches(s.labels, m) {
			reasons[s.labels["reason"]] = true
		}
	}
	for reason := range reasons {
		mr := map[string]string{"reason": reason}
		if model != "" {
			mr["model"] = model
		}
		if d := after.sum(metricRejected, mr) - before.sum(metricRejected, mr); d > 0 {
			v.Rejected[reason] = d
		}
	}
	return v
}

// meanOf is the mean of what a seconds histogram gained between two
// scrapes: its _sum delta over its _count delta.
func meanOf(before, after metricsSnapshot, name string, m map[string]string) time.Duration {
	n := after.sum(name+"_count", m) - before.sum(name+"_count", m)
	if n <= 0 {
		return 0
	}
	return seconds((after.sum(name+"_sum", m) - before.sum(name+"_sum", m)) / n)
}

// has reports whether the snapshot has a sample of name for model (any
// model when model is "").
func (m metricsSnapshot) has(name, model string) bool {
	for _, s := range m {
		if s.name == name && (model == "" || s.labels["model"] == model) {
			return true
		}
	}
	return false
}

// seconds converts a float of seconds, NaN meaning none, to a Duration.
func seconds(s float64) time.Duration {
	if math.IsNaN(s) {
		return 0
	}
	return time.Duration(s * float64(time.Second))
}

package loadtest

import (
	"cmp"
	"slices"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// Report is what one run measured: the client's figures (vegeta's metrics)
// and, when the target exposes inferd's metrics, the server's view of the
// same window.
type Report struct {
	// Target is the URL, model and endpoint hit.
	Target string `json:"target"`
	// Mode is the load shape, e.g. "open constant 100/s" or "closed
	// concurrency 8".
	Mode string `json:"mode"`
	// TargetRate is the open-loop rate asked for (0 in a closed loop).
	TargetRate float64 `json:"target_rate"`
	// Concurrency is the closed-loop concurrency (0 in an open loop).
	Concurrency int `json:"concurrency"`

	// Requests is the number of requests sent.
	Requests uint64 `json:"requests"`
	// Rate is requests sent per second.
	Rate float64 `json:"rate"`
	// Throughput is successful requests per second, over the time to the
	// last answer.
	Throughput float64 `json:"throughput"`
	// Success is the fraction of requests answered 2xx/3xx.
	Success float64 `json:"success"`
	// Duration is the time the requests were sent over; Wait the time
	// from the last request to its answer.
	Duration time.Duration `json:"duration_ns"`
	Wait     time.Duration `json:"wait_ns"`
	// Latency summarises the request latencies.
	Latency Latency `json:"latency"`
	// BytesIn and BytesOut are the response and request body bytes.
	BytesIn  uint64 `json:"bytes_in"`
	BytesOut uint64 `json:"bytes_out"`
	// StatusCodes counts responses by code ("0" is a transport error).
	StatusCodes map[string]int `json:"status_codes"`
	// Errors are the distinct errors seen.
	Errors []string `json:"errors"`
	// Replicas is how many inferd replicas answered: the distinct values
	// of the X-Inferd-Replica header (0 from servers without it). Over 1,
	// the target is a load balancer and the server view is one replica's.
	Replicas int `json:"replicas"`

	// Server is the server's view of the run; nil when its metrics could
	// not be read, ServerError saying why.
	Server      *ServerView `json:"server,omitempty"`
	ServerError string      `json:"server_error,omitempty"`
}

// Latency is a latency distribution summary.
type Latency struct {
	Min  time.Duration `json:"min_ns"`
	Mean time.Duration `json:"mean_ns"`
	P50  time.Duration `json:"p50_ns"`
	P90  time.Duration `json:"p90_ns"`
	P95  time.Duration `json:"p95_ns"`
	P99  time.Duration `json:"p99_ns"`
	Max  time.Duration `json:"max_ns"`
}

// ErrorRate is the fraction of requests that failed.
func (r *Report) ErrorRate() float64 {
	if r.Requests == 0 {
		return 0
	}
	return 1 - r.Success
}

func newReport(cfg Config, m *vegeta.Metrics) *Report {
	r := &Report{
		Target:      cfg.target(),
		Mode:        cfg.mode(),
		Concurrency: cfg.Concurrency,
		Requests:    m.Requests,
		Rate:        m.Rate,
		Throughput:  m.Throughput,
		Success:     m.Success,
		Duration:    m.Duration,
		Wait:        m.Wait,
		Latency: Latency{
			Min: m.Latencies.Min, Mean: m.Latencies.Mean, P50: m.Latencies.P50, P90: m.Latencies.P90,
			P95: m.Latencies.P95, P99: m.Latencies.P99, Max: m.Latencies.Max,
		},
		BytesIn:     m.BytesIn.Total,
		BytesOut:    m.BytesOut.Total,
		StatusCodes: m.StatusCodes,
		Errors:      slices.Clone(m.Errors),
	}
	if cfg.Concurrency == 0 {
		r.TargetRate = cfg.Rate
	}
	if r.StatusCodes == nil {
		r.StatusCodes = map[string]int{}
	}
	if r.Errors == nil {
		r.Errors = []string{}
	}
	return r
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, cmp.Compare)
	return keys
}

package batcher

import (
	"strings"

	"github.com/VictoriaMetrics/metrics"
)

// reason is why a request was rejected: the reason label of
// inferd_batcher_requests_rejected_total.
type reason uint8

const (
	reasonQueueFull reason = iota
	reasonDeadline
	reasonCannotMeet
	reasonClosed
	reasonInvalid
	reasonOverloaded
	numReasons
)

var reasonLabels = [numReasons]string{
	reasonQueueFull:  "queue_full",
	reasonDeadline:   "deadline",
	reasonCannotMeet: "cannot_meet_deadline",
	reasonClosed:     "closed",
	reasonInvalid:    "invalid",
	reasonOverloaded: "overloaded",
}

// secondsBuckets are the le bounds of the queue wait and run time
// histograms: 100µs to 30s.
var secondsBuckets = []float64{
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
	0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
}

// batcherMetrics are the metrics of one model, all labelled model="name".
// They are created with GetOrCreate*, so two batchers with the same name in
// one set (a model being reloaded) share them; the gauges move by deltas so
// they stay right when shared.
type batcherMetrics struct {
	queueDepth *metrics.Gauge               // inferd_batcher_queue_depth: requests queued
	queueWait  *metrics.PrometheusHistogram // inferd_batcher_queue_wait_seconds: Submit to dispatch
	batchSize  *metrics.PrometheusHistogram // inferd_batcher_batch_size: rows per batch
	padding    *metrics.Counter             // inferd_batcher_batch_padding_rows_total: Bucket - Rows
	batches    *metrics.Counter             // inferd_batcher_batches_total: batches dispatched
	inFlight   *metrics.Gauge               // inferd_batcher_batches_in_flight: batches in Runner.Run
	runSeconds *metrics.PrometheusHistogram // inferd_batcher_run_seconds: Runner.Run time
	rejected   [numReasons]*metrics.Counter // inferd_batcher_requests_rejected_total{reason}
	wait       *metrics.Gauge               // inferd_batcher_predicted_wait_seconds: admission's prediction
	throughput *metrics.Gauge               // inferd_batcher_throughput_rows_per_second: admission's rate
}

func newMetrics(set *metrics.Set, model string, maxBatch int) *batcherMetrics {
	lv := escapeLabel(model)
	l := `{model="` + lv + `"}`
	m := &batcherMetrics{
		queueDepth: set.GetOrCreateGauge("inferd_batcher_queue_depth"+l, nil),
		queueWait:  set.GetOrCreatePrometheusHistogramExt("inferd_batcher_queue_wait_seconds"+l, secondsBuckets),
		batchSize:  set.GetOrCreatePrometheusHistogramExt("inferd_batcher_batch_size"+l, sizeBuckets(maxBatch)),
		padding:    set.GetOrCreateCounter("inferd_batcher_batch_padding_rows_total" + l),
		batches:    set.GetOrCreateCounter("inferd_batcher_batches_total" + l),
		inFlight:   set.GetOrCreateGauge("inferd_batcher_batches_in_flight"+l, nil),
		runSeconds: set.GetOrCreatePrometheusHistogramExt("inferd_batcher_run_seconds"+l, secondsBuckets),
		wait:       set.GetOrCreateGauge("inferd_batcher_predicted_wait_seconds"+l, nil),
		throughput: set.GetOrCreateGauge("inferd_batcher_throughput_rows_per_second"+l, nil),
	}
	for r, label := range reasonLabels {
		m.rejected[r] = set.GetOrCreateCounter(`inferd_batcher_requests_rejected_total{model="` + lv + `",reason="` + label + `"}`)
	}
	return m
}

// escapeLabel escapes a Prometheus label value.
func escapeLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

// Help describes each metric family the batcher creates, for the HELP
// lines of a Prometheus exposition (VictoriaMetrics/metrics has no help
// text of its own).
var Help = map[string]string{
	"inferd_batcher_queue_depth":                "Requests waiting in the model's batcher queue.",
	"inferd_batcher_queue_wait_seconds":         "Time a request waited in the queue before its batch started, in seconds.",
	"inferd_batcher_batch_size":                 "Rows per batch run (before padding to a bucket).",
	"inferd_batcher_batch_padding_rows_total":   "Padding rows added to reach a batch-size bucket.",
	"inferd_batcher_batches_total":              "Batches run.",
	"inferd_batcher_batches_in_flight":          "Batches running on the device now.",
	"inferd_batcher_run_seconds":                "Compute time of one batch on the device, copies included, in seconds.",
	"inferd_batcher_requests_rejected_total":    "Requests rejected by the batcher, by reason.",
	"inferd_batcher_predicted_wait_seconds":     "Admission's predicted time from Submit to answer for a one-row request at the lowest priority, in seconds (0 until a run time is known).",
	"inferd_batcher_throughput_rows_per_second": "Rows per second the device sustains at its most efficient measured bucket, all runners together, as admission uses it (0 until a run time is known).",
}

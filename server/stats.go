package server

import (
	"bytes"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/inferd/inferd/kserve"
)

// Triton's model statistics and model configuration extensions, which
// Triton's clients (get_inference_statistics, get_model_config) and
// perf_analyzer read:
//
//	GET /v2/models/stats, /v2/models/M[/versions/V]/stats
//	GET /v2/models/M[/versions/V]/config
//
// The JSON is kserve's StatisticsResponse; the counters here are atomics.

// durStat is a count and its cumulative duration.
type durStat struct{ count, ns atomic.Uint64 }

func (d *durStat) add(t time.Duration) {
	d.count.Add(1)
	d.ns.Add(uint64(max(t, 0)))
}

func (d *durStat) value() kserve.StatDuration {
	return kserve.StatDuration{Count: d.count.Load(), Ns: d.ns.Load()}
}

// modelStats are one model's counters since it was loaded.
type modelStats struct {
	success, fail, queue         durStat
	computeInput, computeInfer   durStat
	computeOutput                durStat
	inferences, executions, last atomic.Uint64 // last: unix ms of the last success
	// batches[n] times the executions of n rows, 1..max_batch.
	batches []batchStat
}

type batchStat struct{ input, infer, output durStat }

// batchTimes is when a batch's phases ended, stamped by the runner into
// every job of the batch.
type batchTimes struct {
	start, inputDone, inferDone, outputDone time.Time
}

func newModelStats(maxBatch int) *modelStats {
	return &modelStats{batches: make([]batchStat, maxBatch+1)}
}

// executed records one batch run of rows rows.
func (s *modelStats) executed(rows int, t *batchTimes) {
	s.executions.Add(1)
	if rows > 0 && rows < len(s.batches) {
		b := &s.batches[rows]
		b.input.add(t.inputDone.Sub(t.start))
		b.infer.add(t.inferDone.Sub(t.inputDone))
		b.output.add(t.outputDone.Sub(t.inferDone))
	}
}

// finished records a request that arrived at start, with err from the
// batcher; t is its batch's times when it ran.
func (s *modelStats) finished(start time.Time, rows int, enqueued time.Time, t *batchTimes, err error) {
	now := time.Now()
	if err != nil {
		s.fail.add(now.Sub(start))
		return
	}
	s.success.add(now.Sub(start))
	s.queue.add(t.start.Sub(enqueued))
	s.computeInput.add(t.inputDone.Sub(t.start))
	s.computeInfer.add(t.inferDone.Sub(t.inputDone))
	s.computeOutput.add(t.outputDone.Sub(t.inferDone))
	s.inferences.Add(uint64(rows))
	s.last.Store(uint64(now.UnixMilli()))
}

// submit runs j through the batcher and records it in the statistics;
// start is when the request arrived. The response says where the time went
// in a Server-Timing header (queue and compute, in ms), as browsers' and
// load testers' tools read it.
func (m *Model) submit(ctx *fasthttp.RequestCtx, j *job, start time.Time) error {
	err := m.batcher.Submit(&j.req)
	m.stats.finished(start, j.rows, j.req.Enqueued(), &j.times, err)
	if err == nil {
		var buf [64]byte
		b := append(buf[:0], "queue;dur="...)
		b = strconv.AppendFloat(b, float64(j.times.start.Sub(j.req.Enqueued()))/1e6, 'f', 3, 64)
		b = append(b, ", compute;dur="...)
		b = strconv.AppendFloat(b, float64(j.times.outputDone.Sub(j.times.start))/1e6, 'f', 3, 64)
		ctx.Response.Header.SetBytesV("Server-Timing", b)
	}
	return err
}

func (m *Model) statistics() kserve.ModelStatistics {
	s := m.stats
	out := kserve.ModelStatistics{
		Name: m.Name, Version: "1",
		LastInference:  s.last.Load(),
		InferenceCount: s.inferences.Load(),
		ExecutionCount: s.executions.Load(),
		InferenceStats: kserve.InferenceStats{
			Success: s.success.value(), Fail: s.fail.value(), Queue: s.queue.value(),
			ComputeInput: s.computeInput.value(), ComputeInfer: s.computeInfer.value(),
			ComputeOutput: s.computeOutput.value(),
		},
		BatchStats: []kserve.BatchStats{},
	}
	for n := 1; n < len(s.batches); n++ {
		b := &s.batches[n]
		if b.infer.count.Load() == 0 {
			continue
		}
		out.BatchStats = append(out.BatchStats, kserve.BatchStats{BatchSize: n,
			ComputeInput: b.input.value(), ComputeInfer: b.infer.value(), ComputeOutput: b.output.value()})
	}
	return out
}

// modelStatistics serves the statistics of m, or of every model when m is
// nil.
func (s *Server) modelStatistics(ctx *fasthttp.RequestCtx, m *Model) {
	resp := kserve.StatisticsResponse{ModelStats: []kserve.ModelStatistics{}}
	if m != nil {
		resp.ModelStats = append(resp.ModelStats, m.statistics())
	} else {
		for _, m := range s.Models() {
			resp.ModelStats = append(resp.ModelStats, m.statistics())
		}
	}
	writeValue(ctx, resp)
}

// The JSON of Triton's model configuration, the fields its clients read.
type (
	configTensor struct {
		Name     string  `json:"name"`
		DataType string  `json:"data_type"`
		Format   string  `json:"format,omitempty"`
		Dims     []int64 `json:"dims"`
	}
	queuePolicy struct {
		TimeoutAction        string `json:"timeout_action"`
		DefaultTimeoutMicros int64  `json:"default_timeout_microseconds"`
		AllowTimeoutOverride bool   `json:"allow_timeout_override"`
		MaxQueueSize         int    `json:"max_queue_size"`
	}
	dynamicBatching struct {
		PreferredBatchSize   []int       `json:"preferred_batch_size"`
		MaxQueueDelayMicros  int64       `json:"max_queue_delay_microseconds"`
		PreserveOrdering     bool        `json:"preserve_ordering"`
		PriorityLevels       int         `json:"priority_levels"`
		DefaultPriorityLevel int         `json:"default_priority_level"`
		DefaultQueuePolicy   queuePolicy `json:"default_queue_policy"`
	}
	instanceGroup struct {
		Name  string `json:"name"`
		Kind  string `json:"kind"`
		Count int    `json:"count"`
		GPUs  []int  `json:"gpus"`
	}
	modelConfig struct {
		Name            string          `json:"name"`
		Platform        string          `json:"platform"`
		Backend         string          `json:"backend"`
		MaxBatchSize    int             `json:"max_batch_size"`
		Input           []configTensor  `json:"input"`
		Output          []configTensor  `json:"output"`
		DynamicBatching dynamicBatching `json:"dynamic_batching"`
		InstanceGroup   []instanceGroup `json:"instance_group"`
	}
)

// tritonType maps a KServe datatype to Triton's config data_type.
func tritonType(dt string) string {
	if dt == "BYTES" {
		return "TYPE_STRING"
	}
	return "TYPE_" + dt
}

// modelConfig serves GET /v2/models/M/config in Triton's layout: dims
// without the batch dimension, max_batch_size, the batcher as
// dynamic_batching (Triton's priority levels count from 1, inferd's from
// 0), the sessions as an instance group.
func (s *Server) modelConfig(ctx *fasthttp.RequestCtx, m *Model) {
	bc := m.batcher.Config()
	dev := m.session.Device()
	ig := instanceGroup{Name: m.Name, Kind: "KIND_CPU", Count: m.session.Instances(), GPUs: []int{}}
	if dev.Kind == "cuda" {
		ig.Kind, ig.GPUs = "KIND_GPU", []int{dev.ID}
	}
	c := modelConfig{
		Name: m.Name, Platform: "onnxruntime_onnx", Backend: "onnxruntime",
		MaxBatchSize: m.session.MaxBatch(),
		DynamicBatching: dynamicBatching{
			PreferredBatchSize:   bc.Buckets,
			MaxQueueDelayMicros:  bc.MaxDelay.Microseconds(),
			PriorityLevels:       bc.Priorities,
			DefaultPriorityLevel: 1,
			DefaultQueuePolicy: queuePolicy{
				TimeoutAction:        "REJECT",
				DefaultTimeoutMicros: bc.DefaultTimeout.Microseconds(),
				AllowTimeoutOverride: true,
				MaxQueueSize:         bc.QueueCapacity,
			},
		},
		InstanceGroup: []instanceGroup{ig},
	}
	for _, t := range m.session.Inputs() {
		c.Input = append(c.Input, configTensor{Name: t.Name, DataType: tritonType(t.Datatype), Format: "FORMAT_NONE", Dims: t.Shape[1:]})
	}
	for _, t := range m.session.Outputs() {
		c.Output = append(c.Output, configTensor{Name: t.Name, DataType: tritonType(t.Datatype), Dims: t.Shape[1:]})
	}
	writeValue(ctx, c)
}

// statsPath reports whether path is /v2/models/stats, which names no
// model. Every model request passes here: bytes, so nothing is allocated.
func statsPath(path []byte) bool {
	return string(bytes.TrimSuffix(path, []byte("/"))) == "/v2/models/stats"
}

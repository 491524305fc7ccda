package server

import (
	"bytes"

	"github.com/valyala/fasthttp"

	"github.com/inferd/inferd/host"
	"github.com/inferd/inferd/kserve"
)

// Triton's model statistics and model configuration extensions, which
// Triton's clients (get_inference_statistics, get_model_config) and
// perf_analyzer read:
//
//	GET /v2/models/stats, /v2/models/M[/versions/V]/stats
//	GET /v2/models/M[/versions/V]/config
//
// The statistics' JSON is kserve's StatisticsResponse, from
// host.Model.Statistics.

// modelStatistics serves the statistics of m, or of every model when m is
// nil.
func (s *Server) modelStatistics(ctx *fasthttp.RequestCtx, m *host.Model) {
	resp := kserve.StatisticsResponse{ModelStats: []kserve.ModelStatistics{}}
	if m != nil {
		resp.ModelStats = append(resp.ModelStats, m.Statistics())
	} else {
		for _, m := range s.Models() {
			resp.ModelStats = append(resp.ModelStats, m.Statistics())
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
// without the batch dimension, max_batch_size (0 and the whole shape for a
// model served unbatched, as Triton writes it), the batcher as
// dynamic_batching (Triton's priority levels count from 1, inferd's from
// 0), the sessions as an instance group.
func (s *Server) modelConfig(ctx *fasthttp.RequestCtx, m *host.Model) {
	bc := m.BatcherConfig()
	dev := m.Device()
	ig := instanceGroup{Name: m.Name, Kind: "KIND_CPU", Count: m.Instances(), GPUs: []int{}}
	if dev.Kind == "cuda" {
		ig.Kind, ig.GPUs = "KIND_GPU", []int{dev.ID}
	}
	c := modelConfig{
		Name: m.Name, Platform: "onnxruntime_onnx", Backend: "onnxruntime",
		MaxBatchSize: m.MaxBatch(),
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
	if !m.Batched() {
		c.MaxBatchSize = 0 // Triton's word for "no batch dimension"
	}
	for _, t := range m.Inputs() {
		c.Input = append(c.Input, configTensor{Name: t.Name, DataType: tritonType(t.Datatype), Format: "FORMAT_NONE", Dims: t.RowShape()})
	}
	for _, t := range m.Outputs() {
		c.Output = append(c.Output, configTensor{Name: t.Name, DataType: tritonType(t.Datatype), Dims: t.RowShape()})
	}
	writeValue(ctx, c)
}

// statsPath reports whether path is /v2/models/stats, which names no
// model. Every model request passes here: bytes, so nothing is allocated.
func statsPath(path []byte) bool {
	return string(bytes.TrimSuffix(path, []byte("/"))) == "/v2/models/stats"
}

package server

import (
	"context"

	"github.com/inferd/inferd/inferencepb"
	"github.com/inferd/inferd/kserve"
)

// Triton's model configuration and statistics extensions over gRPC, the
// same values as their HTTP JSON (triton.go).

// ModelConfig answers as GET /v2/models/M/config, in Triton's ModelConfig
// message: dims without the batch dimension, max_batch_size 0 for a model
// served unbatched, the batcher as dynamic_batching, the sessions as an
// instance group.
func (g *grpcService) ModelConfig(ctx context.Context, req *inferencepb.ModelConfigRequest) (*inferencepb.ModelConfigResponse, error) {
	m, err := g.s.grpcModel(ctx, req.Name, req.Version)
	if err != nil {
		return nil, err
	}
	defer m.Release()
	bc := m.BatcherConfig()
	dev := m.Device()
	ig := &inferencepb.ModelInstanceGroup{Name: m.Name, Kind: inferencepb.ModelInstanceGroup_KIND_CPU, Count: int32(m.Instances())}
	if dev.Kind == "cuda" {
		ig.Kind, ig.Gpus = inferencepb.ModelInstanceGroup_KIND_GPU, []int32{int32(dev.ID)}
	}
	db := &inferencepb.ModelDynamicBatching{
		MaxQueueDelayMicroseconds: uint64(bc.MaxDelay.Microseconds()),
		PriorityLevels:            uint64(bc.Priorities),
		DefaultPriorityLevel:      1,
		DefaultQueuePolicy: &inferencepb.ModelQueuePolicy{
			TimeoutAction:              inferencepb.ModelQueuePolicy_REJECT,
			DefaultTimeoutMicroseconds: uint64(bc.DefaultTimeout.Microseconds()),
			AllowTimeoutOverride:       true,
			MaxQueueSize:               uint32(bc.QueueCapacity),
		},
	}
	for _, b := range bc.Buckets {
		db.PreferredBatchSize = append(db.PreferredBatchSize, int32(b))
	}
	c := &inferencepb.ModelConfig{
		Name: m.Name, Platform: "onnxruntime_onnx", Backend: "onnxruntime",
		MaxBatchSize:     int32(m.MaxBatch()),
		SchedulingChoice: &inferencepb.ModelConfig_DynamicBatching{DynamicBatching: db},
		InstanceGroup:    []*inferencepb.ModelInstanceGroup{ig},
	}
	if !m.Batched() {
		c.MaxBatchSize = 0 // Triton's word for "no batch dimension"
	}
	for _, t := range m.Inputs() {
		c.Input = append(c.Input, &inferencepb.ModelInput{Name: t.Name, DataType: grpcDataType(t.Datatype), Format: inferencepb.ModelInput_FORMAT_NONE, Dims: t.RowShape()})
	}
	for _, t := range m.Outputs() {
		c.Output = append(c.Output, &inferencepb.ModelOutput{Name: t.Name, DataType: grpcDataType(t.Datatype), Dims: t.RowShape()})
	}
	return &inferencepb.ModelConfigResponse{Config: c}, nil
}

// grpcDataType maps a KServe datatype to Triton's config DataType, as
// tritonType does for JSON.
func grpcDataType(dt string) inferencepb.DataType {
	return inferencepb.DataType(inferencepb.DataType_value[tritonType(dt)])
}

// ModelStatistics answers as GET /v2/models[/M]/stats: the statistics of
// the model named, or of every model when the name is empty.
func (g *grpcService) ModelStatistics(ctx context.Context, req *inferencepb.ModelStatisticsRequest) (*inferencepb.ModelStatisticsResponse, error) {
	resp := &inferencepb.ModelStatisticsResponse{}
	if req.Name == "" {
		// The gateway's name for the statistics of every model.
		if err := g.s.grpcGuard(ctx, []byte("stats")); err != nil {
			return nil, err
		}
		for _, m := range g.s.Models() {
			resp.ModelStats = append(resp.ModelStats, grpcStatistics(m.Statistics()))
		}
		return resp, nil
	}
	m, err := g.s.grpcModel(ctx, req.Name, req.Version)
	if err != nil {
		return nil, err
	}
	defer m.Release()
	resp.ModelStats = append(resp.ModelStats, grpcStatistics(m.Statistics()))
	return resp, nil
}

func grpcStatistics(s kserve.ModelStatistics) *inferencepb.ModelStatistics {
	d := func(v kserve.StatDuration) *inferencepb.StatisticDuration {
		return &inferencepb.StatisticDuration{Count: v.Count, Ns: v.Ns}
	}
	is := s.InferenceStats
	out := &inferencepb.ModelStatistics{
		Name: s.Name, Version: s.Version,
		LastInference: s.LastInference, InferenceCount: s.InferenceCount, ExecutionCount: s.ExecutionCount,
		InferenceStats: &inferencepb.InferStatistics{
			Success: d(is.Success), Fail: d(is.Fail), Queue: d(is.Queue),
			ComputeInput: d(is.ComputeInput), ComputeInfer: d(is.ComputeInfer), ComputeOutput: d(is.ComputeOutput),
			CacheHit: d(is.CacheHit), CacheMiss: d(is.CacheMiss),
		},
	}
	for _, b := range s.BatchStats {
		out.BatchStats = append(out.BatchStats, &inferencepb.InferBatchStatistics{BatchSize: uint64(b.BatchSize),
			ComputeInput: d(b.ComputeInput), ComputeInfer: d(b.ComputeInfer), ComputeOutput: d(b.ComputeOutput)})
	}
	return out
}

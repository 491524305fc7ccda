package kserve

// The statistics extension as Triton defines it: the body of
// GET /v2/models/stats and GET /v2/models/{name}[/versions/{v}]/stats.
// Servers marshal these with encoding/json; clients unmarshal them.
// Durations are cumulative nanoseconds per request: a request in a batch
// of n is charged the whole batch's compute time.

// StatDuration is a count and its cumulative nanoseconds.
type StatDuration struct {
	Count uint64 `json:"count"`
	Ns    uint64 `json:"ns"`
}

// InferenceStats are a model's per-request counters.
type InferenceStats struct {
	Success       StatDuration `json:"success"`
	Fail          StatDuration `json:"fail"`
	Queue         StatDuration `json:"queue"`
	ComputeInput  StatDuration `json:"compute_input"`
	ComputeInfer  StatDuration `json:"compute_infer"`
	ComputeOutput StatDuration `json:"compute_output"`
	CacheHit      StatDuration `json:"cache_hit"`
	CacheMiss     StatDuration `json:"cache_miss"`
}

// BatchStats are the executions of one batch size.
type BatchStats struct {
	BatchSize     int          `json:"batch_size"`
	ComputeInput  StatDuration `json:"compute_input"`
	ComputeInfer  StatDuration `json:"compute_infer"`
	ComputeOutput StatDuration `json:"compute_output"`
}

// ModelStatistics are one model version's statistics.
type ModelStatistics struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// LastInference is the Unix time of the last success, in ms.
	LastInference uint64 `json:"last_inference"`
	// InferenceCount counts rows inferred; ExecutionCount batches run.
	InferenceCount uint64         `json:"inference_count"`
	ExecutionCount uint64         `json:"execution_count"`
	InferenceStats InferenceStats `json:"inference_stats"`
	BatchStats     []BatchStats   `json:"batch_stats"`
}

// StatisticsResponse is the body of a statistics request.
type StatisticsResponse struct {
	ModelStats []ModelStatistics `json:"model_stats"`
}

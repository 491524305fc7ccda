package server

import (
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inferd/inferd/config"
	"github.com/inferd/inferd/gpu"
	"github.com/inferd/inferd/kserve"
)

// GET /v2/models/M/config answers Triton's model configuration: what
// tritonclient's get_model_config and perf_analyzer read.
func TestModelConfigEndpoint(t *testing.T) {
	ts := start(t, tinyConfig(func(c *config.Config) {
		c.Models[0].Batcher.MaxDelay = 3 * time.Millisecond
		c.Models[0].Buckets = []int{1, 4, 8}
	}))
	var c modelConfig
	r := ts.do(t, "GET", "/v2/models/tiny/config", "", nil)
	if r.code != 200 {
		t.Fatalf("%d %s", r.code, r.body)
	}
	r.json(t, &c)
	in, out := ts.model("tiny").Inputs()[0], ts.model("tiny").Outputs()[0]
	if c.Name != "tiny" || c.Platform != "onnxruntime_onnx" || c.Backend != "onnxruntime" || c.MaxBatchSize != 8 {
		t.Errorf("config %+v", c)
	}
	if len(c.Input) != 1 || c.Input[0].Name != in.Name || c.Input[0].DataType != "TYPE_FP32" ||
		!slices.Equal(c.Input[0].Dims, []int64{3, 224, 224}) {
		t.Errorf("input %+v, want %s TYPE_FP32 dims [3 224 224] (no batch dimension)", c.Input, in.Name)
	}
	if len(c.Output) != 1 || c.Output[0].Name != out.Name || c.Output[0].DataType != "TYPE_FP32" ||
		!slices.Equal(c.Output[0].Dims, out.Shape[1:]) {
		t.Errorf("output %+v, model's %s %v", c.Output, out.Name, out.Shape)
	}
	d := c.DynamicBatching
	if d.MaxQueueDelayMicros != 3000 || d.PriorityLevels != 2 || len(d.PreferredBatchSize) != 3 ||
		d.DefaultQueuePolicy.MaxQueueSize != 1024 || d.DefaultQueuePolicy.DefaultTimeoutMicros != 30_000_000 {
		t.Errorf("dynamic_batching %+v", d)
	}
	if len(c.InstanceGroup) != 1 || c.InstanceGroup[0].Kind != "KIND_CPU" || c.InstanceGroup[0].Count != 1 {
		t.Errorf("instance_group %+v", c.InstanceGroup)
	}
	if r := ts.do(t, "GET", "/v2/models/tiny/versions/1/config", "", nil); r.code != 200 {
		t.Errorf("versions/1/config: %d %s", r.code, r.body)
	}
	ts.do(t, "GET", "/v2/models/tiny/versions/2/config", "", nil).wantError(t, 404, `no version "2"`)
	ts.do(t, "POST", "/v2/models/tiny/config", "", nil).wantError(t, 405, "use GET")
}

// Triton's statistics: counts and cumulative times per model, which add up
// to what was sent; a request that expires in the queue counts as a
// failure; /v2/models/stats lists every model.
func TestModelStatistics(t *testing.T) {
	ts := start(t, tinyConfig(func(c *config.Config) {
		c.Models[0].Batcher.MaxDelay = 20 * time.Millisecond
		c.Models = append(c.Models, config.Model{Name: "tiny2", Options: gpu.Options{Device: "cpu", MaxBatch: 4}, Path: "builtin:tiny", Softmax: "auto"})
	}))
	before := time.Now()
	var wg sync.WaitGroup
	rows := 0
	var mu sync.Mutex
	for i := range 6 {
		n := 1 + i%2
		rows += n
		wg.Go(func() {
			r := ts.do(t, "POST", "/v2/models/tiny/infer", "application/json", jsonInfer(n, floats(n*3*224*224, float64(i))))
			mu.Lock()
			defer mu.Unlock()
			if r.code != 200 {
				t.Errorf("infer: %d %s", r.code, r.body)
			}
		})
	}
	wg.Wait()
	if r := ts.do(t, "POST", "/v2/models/tiny/classify", "image/png", pngImage(t, 64, 48, 3)); r.code != 200 {
		t.Fatalf("classify: %d %s", r.code, r.body)
	}
	rows++
	short := strings.Replace(string(jsonInfer(1, floats(3*224*224, 0))), `"inputs"`, `"parameters":{"timeout":1},"inputs"`, 1)
	ts.do(t, "POST", "/v2/models/tiny/infer", "", []byte(short)).wantError(t, http.StatusServiceUnavailable, "cannot meet deadline")
	ts.do(t, "POST", "/v2/models/tiny/infer", "application/json", []byte(`{"inputs":[]}`)).wantError(t, 400, "")

	var resp kserve.StatisticsResponse
	r := ts.do(t, "GET", "/v2/models/tiny/stats", "", nil)
	if r.code != 200 {
		t.Fatalf("%d %s", r.code, r.body)
	}
	r.json(t, &resp)
	if len(resp.ModelStats) != 1 {
		t.Fatalf("%d models in %s", len(resp.ModelStats), r.body)
	}
	s := resp.ModelStats[0]
	is := s.InferenceStats
	if s.Name != "tiny" || s.Version != "1" || s.InferenceCount != uint64(rows) || is.Success.Count != 7 {
		t.Errorf("name %q version %q inference_count %d (want %d) success %+v (want 7)", s.Name, s.Version, s.InferenceCount, rows, is.Success)
	}
	// The 400 never reached the model; the expired request did.
	if is.Fail.Count != 1 {
		t.Errorf("fail %+v, want 1 (the expired request)", is.Fail)
	}
	for name, d := range map[string]kserve.StatDuration{"queue": is.Queue, "compute_input": is.ComputeInput,
		"compute_infer": is.ComputeInfer, "compute_output": is.ComputeOutput} {
		if d.Count != is.Success.Count || d.Ns == 0 {
			t.Errorf("%s %+v: want count %d and some time", name, d, is.Success.Count)
		}
	}
	if is.Success.Ns < is.Queue.Ns+is.ComputeInfer.Ns {
		t.Errorf("success %d ns is less than queue %d + compute %d", is.Success.Ns, is.Queue.Ns, is.ComputeInfer.Ns)
	}
	// How many batches the concurrent requests made depends on timing.
	if s.ExecutionCount < 1 || s.ExecutionCount > is.Success.Count {
		t.Errorf("execution_count %d for %d requests", s.ExecutionCount, is.Success.Count)
	}
	var executions, batched uint64
	for _, b := range s.BatchStats {
		executions += b.ComputeInfer.Count
		batched += uint64(b.BatchSize) * b.ComputeInfer.Count
	}
	if executions != s.ExecutionCount || batched != s.InferenceCount {
		t.Errorf("batch_stats %+v: %d executions of %d rows, want %d of %d", s.BatchStats, executions, batched, s.ExecutionCount, s.InferenceCount)
	}
	if last := time.UnixMilli(int64(s.LastInference)); last.Before(before.Add(-time.Second)) || last.After(time.Now()) {
		t.Errorf("last_inference %v, want during the test", last)
	}

	var all kserve.StatisticsResponse
	ts.do(t, "GET", "/v2/models/stats", "", nil).json(t, &all)
	if len(all.ModelStats) != 2 || all.ModelStats[0].Name != "tiny" || all.ModelStats[1].Name != "tiny2" ||
		all.ModelStats[1].InferenceCount != 0 || all.ModelStats[1].BatchStats == nil {
		t.Errorf("all models: %+v", all.ModelStats)
	}
	if r := ts.do(t, "GET", "/v2/models/tiny/versions/1/stats", "", nil); r.code != 200 {
		t.Errorf("versions/1/stats: %d", r.code)
	}
}

// Triton's repository index lists the models; load and unload are refused
// with the reason.
func TestRepositoryIndex(t *testing.T) {
	ts := start(t, tinyConfig(func(c *config.Config) {
		c.Models = append(c.Models, config.Model{Name: "tiny2", Options: gpu.Options{Device: "cpu", MaxBatch: 4}, Path: "builtin:tiny", Softmax: "auto"})
	}))
	var index []repositoryEntry
	ts.do(t, "POST", "/v2/repository/index", "application/json", nil).json(t, &index)
	if len(index) != 2 || index[0] != (repositoryEntry{Name: "tiny", Version: "1", State: "READY"}) || index[1].Name != "tiny2" {
		t.Errorf("index %+v", index)
	}
	ts.do(t, "POST", "/v2/repository/index", "application/json", []byte(`{"ready":true}`)).json(t, &index)
	if len(index) != 2 {
		t.Errorf("ready index %+v", index)
	}
	ts.do(t, "POST", "/v2/repository/index", "application/json", []byte(`{"ready":`)).wantError(t, 400, "repository index request")
	ts.do(t, "GET", "/v2/repository/index", "", nil).wantError(t, 405, "use POST")
	ts.do(t, "POST", "/v2/repository/models/tiny/unload", "", nil).wantError(t, 400, `unload of model "tiny" refused`)
	ts.do(t, "POST", "/v2/repository/models/other/load", "", nil).wantError(t, 400, "config file")
	if r := ts.do(t, "POST", "/v2/models/tiny/infer", "application/json", jsonInfer(1, floats(3*224*224, 0))); r.code != 200 {
		t.Errorf("after the refused unload: %d %s", r.code, r.body)
	}
	// Names clients make up never become metric labels.
	if m := ts.do(t, "GET", "/metrics", "", nil); strings.Contains(string(m.body), `model="other"`) {
		t.Error(`/metrics has a series for the made-up model "other"`)
	}
}

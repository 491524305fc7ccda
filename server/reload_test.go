package server

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inferd/inferd/config"
	"github.com/inferd/inferd/gpu"
)

// Reload under steady load: a model is added, one is replaced with a new
// configuration, one is removed, and not one request fails; unchanged
// models are kept as they are; a model that cannot open changes nothing.
func TestReloadUnderLoad(t *testing.T) {
	ts := start(t, tinyConfig(func(c *config.Config) {
		c.Models = append(c.Models, config.Model{Name: "gone", Options: gpu.Options{Device: "cpu", MaxBatch: 4}, Path: "builtin:tiny", Softmax: "auto"})
	}))
	tiny := ts.model("tiny")
	body := jsonInfer(1, floats(3*224*224, 0.4))

	var sent, failed atomic.Int64
	var errs sync.Map
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				r := ts.do(t, "POST", "/v2/models/tiny/infer", "application/json", body)
				sent.Add(1)
				if r.code != 200 {
					failed.Add(1)
					errs.Store(r.code, string(r.body))
				}
			}
		})
	}
	time.Sleep(200 * time.Millisecond)

	// Add "extra", change tiny's max_batch (a replacement), drop "gone".
	next := parseModels(t, `
models:
  - {name: tiny, path: "builtin:tiny", device: cpu, max_batch: 4}
  - {name: extra, path: "builtin:tiny", device: cpu, max_batch: 2}
`)
	res, err := ts.Reload(context.Background(), next)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	stop()
	wg.Wait()
	if !slices.Equal(res.Added, []string{"extra"}) || !slices.Equal(res.Replaced, []string{"tiny"}) ||
		!slices.Equal(res.Removed, []string{"gone"}) || len(res.Kept) != 0 {
		t.Errorf("reload result %+v", res)
	}
	if failed.Load() != 0 {
		var all []string
		errs.Range(func(k, v any) bool { all = append(all, v.(string)); return true })
		t.Errorf("%d of %d requests failed across the reload: %v", failed.Load(), sent.Load(), all)
	}
	if ts.model("tiny") == tiny || ts.model("tiny").MaxBatch() != 4 || tiny.Ready() {
		t.Error("tiny was not replaced by a max_batch 4 model, or the old one still takes requests")
	}
	ts.do(t, "GET", "/v2/models/gone", "", nil).wantError(t, 404, `unknown model "gone"`)
	if r := ts.do(t, "POST", "/v2/models/extra/infer", "application/json", body); r.code != 200 {
		t.Errorf("extra: %d %s", r.code, r.body)
	}
	if m := string(ts.do(t, "GET", "/metrics", "", nil).body); strings.Contains(m, `inferd_model_info{model="gone"`) ||
		!strings.Contains(m, `inferd_model_info{model="extra"`) || !strings.Contains(m, `model="tiny",device="cpu",runtime=`) ||
		strings.Count(m, `inferd_model_info{model="tiny"`) != 1 {
		t.Errorf("model info series after the reload:\n%s", grepLines(m, "inferd_model_info"))
	}

	// The same configuration again: everything kept, nothing reopened.
	current := ts.model("tiny")
	res, err = ts.Reload(context.Background(), next)
	if err != nil || len(res.Kept) != 2 || ts.model("tiny") != current {
		t.Errorf("an unchanged reload: %+v, %v", res, err)
	}

	// A model that cannot open: an error, and the served set is untouched.
	bad := parseModels(t, `
models:
  - {name: bad, path: /nonexistent/model.onnx, device: cpu}
`)
	if _, err := ts.Reload(context.Background(), append(slices.Clone(next), bad...)); err == nil || !strings.Contains(err.Error(), "still serving") {
		t.Errorf("reload with a missing file: %v", err)
	}
	if ts.model("tiny") != current || ts.model("bad") != nil || len(ts.Models()) != 2 {
		t.Errorf("a failed reload changed the served models: %v", ts.modelList())
	}
}

// parseModels returns the models of a config file's text, with defaults.
func parseModels(t *testing.T, yaml string) []config.Model {
	t.Helper()
	c, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return c.Models
}

func grepLines(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

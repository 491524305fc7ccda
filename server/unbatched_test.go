package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/inferd/inferd/config"
	"github.com/inferd/inferd/model"
)

// oipConfig serves the Open Inference Protocol's example model (input0
// UINT32 [2,2], input1 BOOL [3]: no shared batch dimension) as "oip".
func oipConfig(t *testing.T) *config.Config {
	t.Helper()
	var buf bytes.Buffer
	if err := model.WritePassThrough(&buf, model.OIPExample); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "oip.onnx")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse([]byte("models:\n  - name: oip\n    path: " + path + "\n    device: cpu\n"))
	if err != nil {
		t.Fatal(err)
	}
	c.Runtime.ModelDir = modelDir
	return c
}

// A model without a batch dimension is served unbatched: the request's
// shapes are the model's exactly, the response keeps them, the metadata
// shows them, and the Triton config says max_batch_size 0 with the whole
// shapes as dims.
func TestUnbatchedModel(t *testing.T) {
	ts := start(t, oipConfig(t))

	// The protocol's own example request.
	r := ts.do(t, "POST", "/v2/models/oip/infer", "application/json", []byte(`{"id":"42","inputs":[
		{"name":"input0","shape":[2,2],"datatype":"UINT32","data":[1,2,3,4]},
		{"name":"input1","shape":[3],"datatype":"BOOL","data":[true,false,true]}]}`))
	if r.code != http.StatusOK {
		t.Fatalf("infer: %d %s", r.code, r.body)
	}
	var resp struct {
		ID      string
		Outputs []struct {
			Name     string
			Datatype string
			Shape    []int64
			Data     json.RawMessage
		}
	}
	r.json(t, &resp)
	want := []struct{ name, datatype, shape, data string }{
		{"output0", "UINT32", "[2 2]", "[1,2,3,4]"},
		{"output1", "BOOL", "[3]", "[false,true,false]"},
	}
	if resp.ID != "42" || len(resp.Outputs) != len(want) {
		t.Fatalf("response %s", r.body)
	}
	for i, w := range want {
		o := resp.Outputs[i]
		if o.Name != w.name || o.Datatype != w.datatype || fmtShape(o.Shape) != w.shape || string(o.Data) != w.data {
			t.Errorf("output %d: %s %s %v %s; want %s %s %s %s", i, o.Name, o.Datatype, o.Shape, o.Data, w.name, w.datatype, w.shape, w.data)
		}
	}

	for _, c := range []struct{ name, body, want string }{
		// A batch dimension added, as a client of a batched model sends.
		{"batch dim added", `{"inputs":[{"name":"input0","shape":[1,2,2],"datatype":"UINT32","data":[1,2,3,4]},
			{"name":"input1","shape":[3],"datatype":"BOOL","data":[true,false,true]}]}`,
			`input "input0": shape [1 2 2], model "oip" takes exactly [2,2] (it has no batch dimension: max_batch_size 0)`},
		// Two "rows" of input1: the first dimension is not a batch.
		{"first dim differs", `{"inputs":[{"name":"input0","shape":[2,2],"datatype":"UINT32","data":[1,2,3,4]},
			{"name":"input1","shape":[6],"datatype":"BOOL","data":[true,false,true,true,false,true]}]}`,
			`input "input1": shape [6], model "oip" takes exactly [3]`},
		{"wrong datatype", `{"inputs":[{"name":"input0","shape":[2,2],"datatype":"INT32","data":[1,2,3,4]},
			{"name":"input1","shape":[3],"datatype":"BOOL","data":[true,false,true]}]}`,
			`input "input0": datatype INT32, model "oip" takes UINT32`},
		{"missing input", `{"inputs":[{"name":"input0","shape":[2,2],"datatype":"UINT32","data":[1,2,3,4]}]}`,
			`input "input1" is missing`},
	} {
		t.Run(c.name, func(t *testing.T) {
			ts.do(t, "POST", "/v2/models/oip/infer", "application/json", []byte(c.body)).wantError(t, http.StatusBadRequest, c.want)
		})
	}

	var md struct {
		Inputs, Outputs []struct {
			Name  string
			Shape []int64
		}
	}
	ts.do(t, "GET", "/v2/models/oip", "", nil).json(t, &md)
	if len(md.Inputs) != 2 || fmtShape(md.Inputs[0].Shape) != "[2 2]" || fmtShape(md.Inputs[1].Shape) != "[3]" ||
		len(md.Outputs) != 2 || fmtShape(md.Outputs[0].Shape) != "[2 2]" || fmtShape(md.Outputs[1].Shape) != "[3]" {
		t.Errorf("metadata %+v: want the file's shapes", md)
	}

	var cfg struct {
		MaxBatchSize  int `json:"max_batch_size"`
		Input, Output []struct {
			Name string
			Dims []int64
		}
	}
	r = ts.do(t, "GET", "/v2/models/oip/config", "", nil)
	r.json(t, &cfg)
	if cfg.MaxBatchSize != 0 || len(cfg.Input) != 2 || fmtShape(cfg.Input[0].Dims) != "[2 2]" || fmtShape(cfg.Input[1].Dims) != "[3]" ||
		len(cfg.Output) != 2 || fmtShape(cfg.Output[1].Dims) != "[3]" {
		t.Errorf("config %s: want max_batch_size 0 and the whole shapes as dims", r.body)
	}
}

func fmtShape(s []int64) string {
	b, _ := json.Marshal(s)
	return string(bytes.ReplaceAll(b, []byte(","), []byte(" ")))
}

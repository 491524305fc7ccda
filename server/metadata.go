package server

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/valyala/fasthttp"

	"github.com/inferd/inferd/host"
	"github.com/inferd/inferd/httperr"
	"github.com/inferd/inferd/kserve"
)

// serverMetadata serves GET /v2.
func (s *Server) serverMetadata(ctx *fasthttp.RequestCtx) {
	writeValue(ctx, kserve.ServerMetadata{Name: "inferd", Version: Version,
		Extensions: []string{"binary_tensor_data", "classification", "model_configuration", "statistics", "model_repository"}})
}

func (s *Server) serverReady(ctx *fasthttp.RequestCtx) {
	if s.Ready() {
		writeJSON(ctx, http.StatusOK, `{"ready":true}`)
		return
	}
	ctx.Response.Header.Set("Retry-After", "1")
	writeJSON(ctx, http.StatusServiceUnavailable, `{"ready":false}`)
}

// modelMetadata serves GET /v2/models/M.
func (s *Server) modelMetadata(ctx *fasthttp.RequestCtx, m *host.Model) {
	md := kserve.ModelMetadata{Name: m.Name, Versions: []string{"1"}, Platform: "onnxruntime_onnx"}
	for _, t := range m.Inputs() {
		md.Inputs = append(md.Inputs, kserve.TensorMetadata{Name: t.Name, Datatype: t.Datatype, Shape: t.Shape})
	}
	for _, t := range m.Outputs() {
		md.Outputs = append(md.Outputs, kserve.TensorMetadata{Name: t.Name, Datatype: t.Datatype, Shape: t.Shape})
	}
	writeValue(ctx, md)
}

// modelReady serves GET /v2/models/M/ready: {"name":...,"ready":...}, the
// name through the JSON encoder (a model name may hold a quote).
func (s *Server) modelReady(ctx *fasthttp.RequestCtx, m *host.Model) {
	ready := m.Ready() && !s.draining.Load()
	b := append(ctx.Response.SwapBody(nil)[:0], `{"name":`...)
	b = kserve.AppendString(b, m.Name)
	if ready {
		b = append(b, `,"ready":true}`...)
	} else {
		b = append(b, `,"ready":false}`...)
		ctx.Response.Header.Set("Retry-After", "1")
		ctx.SetStatusCode(http.StatusServiceUnavailable)
	}
	ctx.SetContentType("application/json")
	ctx.Response.SwapBody(b)
}

func writeValue(ctx *fasthttp.RequestCtx, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(ctx, err)
		return
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

// repositoryEntry is one model in Triton's repository index.
type repositoryEntry struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	State   string `json:"state"`
	Reason  string `json:"reason"`
}

// maxIndexBody bounds a repository index request ({"ready": true}).
const maxIndexBody = 64 << 10

// repositoryIndex serves POST /v2/repository/index (Triton's model
// repository extension): every model with its state; {"ready": true} in
// the body lists the ready ones only.
func (s *Server) repositoryIndex(ctx *fasthttp.RequestCtx) {
	var req struct {
		Ready bool `json:"ready"`
	}
	h := s.budget.Hold()
	defer h.Release()
	b, err := s.readBody(ctx, &h, maxIndexBody)
	defer b.release()
	if err != nil {
		writeError(ctx, err)
		return
	}
	if body := b.b; len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			writeError(ctx, httperr.Errorf(http.StatusBadRequest, "repository index request: %v (want {} or {\"ready\": true})", err))
			return
		}
	}
	index := []repositoryEntry{}
	for _, m := range s.Models() {
		e := repositoryEntry{Name: m.Name, Version: "1", State: "READY"}
		if !m.Ready() {
			e.State, e.Reason = "UNAVAILABLE", "not ready"
		}
		if req.Ready && e.State != "READY" {
			continue
		}
		index = append(index, e)
	}
	writeValue(ctx, index)
}

// modelControl answers the repository extension's load and unload: inferd
// serves the models of its config file (reloaded on SIGHUP), so both are
// refused, saying so.
func (s *Server) modelControl(ctx *fasthttp.RequestCtx, name, action []byte) {
	writeError(ctx, httperr.Errorf(http.StatusBadRequest, "%s of model %q refused: inferd serves the models its config file lists (%s); change the file and send the replica SIGHUP", action, name, s.modelList()))
}

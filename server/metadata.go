package server

import (
	"encoding/json"
	"net/http"

	"github.com/valyala/fasthttp"

	"github.com/inferd/inferd/kserve"
)

// serverMetadata serves GET /v2.
func (s *Server) serverMetadata(ctx *fasthttp.RequestCtx) {
	writeValue(ctx, kserve.ServerMetadata{Name: "inferd", Version: Version,
		Extensions: []string{"binary_tensor_data", "classification", "model_configuration", "statistics"}})
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
func (s *Server) modelMetadata(ctx *fasthttp.RequestCtx, m *Model) {
	md := kserve.ModelMetadata{Name: m.Name, Versions: []string{"1"}, Platform: "onnxruntime_onnx"}
	for _, t := range m.session.Inputs() {
		md.Inputs = append(md.Inputs, kserve.TensorMetadata{Name: t.Name, Datatype: t.Datatype, Shape: t.Shape})
	}
	for _, t := range m.session.Outputs() {
		md.Outputs = append(md.Outputs, kserve.TensorMetadata{Name: t.Name, Datatype: t.Datatype, Shape: t.Shape})
	}
	writeValue(ctx, md)
}

func (s *Server) modelReady(ctx *fasthttp.RequestCtx, m *Model) {
	if m.Ready() && !s.draining.Load() {
		writeJSON(ctx, http.StatusOK, `{"name":"`+m.Name+`","ready":true}`)
		return
	}
	ctx.Response.Header.Set("Retry-After", "1")
	writeJSON(ctx, http.StatusServiceUnavailable, `{"name":"`+m.Name+`","ready":false}`)
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

//go:build !race

package server

import (
	"strconv"
	"testing"

	"github.com/valyala/fasthttp"
)

// The server path of a binary infer request — parse, check, batch, run,
// encode — allocates a handful of times per request: 6 when measured, of
// which 4 are onnxruntime_go's per-run pointer slices (per batch, so per
// request only when batches hold one request, as here).
func TestInferAllocations(t *testing.T) {
	ts := start(t, tinyConfig(nil))
	body, hlen := binaryInfer(1, floats(3*224*224, 0), true)
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod("POST")
	ctx.Request.SetRequestURI("/v2/models/tiny/infer")
	ctx.Request.Header.Set(headerInferenceLength, strconv.Itoa(hlen))
	ctx.Request.SetBody(body)
	h := ts.Handler()
	allocs := testing.AllocsPerRun(50, func() {
		ctx.Response.Reset()
		h(&ctx)
		if ctx.Response.StatusCode() != 200 {
			t.Fatalf("%d %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	})
	t.Logf("%.1f allocations per binary infer request on the server path", allocs)
	if allocs > 6 {
		t.Errorf("%.1f allocations per request; budget 6", allocs)
	}
}

//go:build !race

package server

import "testing"

// The server path of a binary infer request — parse, check, batch, run,
// encode — allocates a handful of times per request: 6 when measured, of
// which 4 are onnxruntime_go's per-run pointer slices (per batch, so per
// request only when batches hold one request, as here).
func TestInferAllocations(t *testing.T) {
	h, ctx := binaryInferCtx(t)
	allocs := testing.AllocsPerRun(50, func() {
		ctx.Response.Reset()
		h(ctx)
		if ctx.Response.StatusCode() != 200 {
			t.Fatalf("%d %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	})
	t.Logf("%.1f allocations per binary infer request on the server path", allocs)
	if allocs > 6 {
		t.Errorf("%.1f allocations per request; budget 6", allocs)
	}
}

package server

import (
	"strconv"
	"testing"

	"github.com/valyala/fasthttp"
)

// BenchmarkInferHandler times the server path of one binary infer request
// of a 224x224 float32 image (602,112 bytes in, 4,000 out) on the tiny
// model, in process and one at a time: parse, check, batch, run, encode.
// It isolates what the handler costs beside the model, such as copies of
// the tensors (bench/results/issue11-copies-2026-11-30.md).
func BenchmarkInferHandler(b *testing.B) {
	h, ctx := binaryInferCtx(b)
	b.ReportAllocs()
	b.SetBytes(int64(len(ctx.Request.Body())))
	for b.Loop() {
		ctx.Response.Reset()
		h(ctx)
		if ctx.Response.StatusCode() != 200 {
			b.Fatalf("%d %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
}

// binaryInferCtx starts a server on the tiny model and returns its handler
// with a request context holding one binary infer request of a 224x224
// float32 image, to be served again and again in process.
func binaryInferCtx(t testing.TB) (fasthttp.RequestHandler, *fasthttp.RequestCtx) {
	ts := start(t, tinyConfig(nil))
	body, hlen := binaryInfer(1, floats(3*224*224, 0), true)
	ctx := new(fasthttp.RequestCtx)
	ctx.Request.Header.SetMethod("POST")
	ctx.Request.SetRequestURI("/v2/models/tiny/infer")
	ctx.Request.Header.Set(headerInferenceLength, strconv.Itoa(hlen))
	ctx.Request.SetBody(body)
	return ts.Handler(), ctx
}

package server

import (
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/inferd/inferd/web"
)

// uiCtx returns the handler of a server on the tiny model and a request
// context for GET path with the given headers, served in process.
func uiCtx(b *testing.B, path string, headers ...string) (fasthttp.RequestHandler, *fasthttp.RequestCtx) {
	ts := start(b, tinyConfig(nil))
	// Some traffic, so that the status has series to read.
	img := pngImage(b, 32, 32, 1)
	for range 20 {
		ts.do(b, "POST", "/v2/models/tiny/classify", "image/png", img)
	}
	ctx := new(fasthttp.RequestCtx)
	ctx.Request.Header.SetMethod("GET")
	ctx.Request.SetRequestURI(path)
	for i := 0; i+1 < len(headers); i += 2 {
		ctx.Request.Header.Set(headers[i], headers[i+1])
	}
	return ts.Handler(), ctx
}

// BenchmarkUIStatus times GET /v2/ui/status: the metrics set written out
// and parsed, the window's deltas and quantiles, the JSON. It is what one
// open status page costs the server every 2 s.
func BenchmarkUIStatus(b *testing.B) {
	h, ctx := uiCtx(b, "/v2/ui/status")
	b.ReportAllocs()
	for b.Loop() {
		ctx.Response.Reset()
		h(ctx)
		if ctx.Response.StatusCode() != 200 {
			b.Fatalf("%d %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
}

// BenchmarkUIAsset times GET /ui/app.js from a browser that accepts gzip:
// the copy gzipped at startup, sent as it is.
func BenchmarkUIAsset(b *testing.B) {
	js, _ := web.Lookup("app.js")
	h, ctx := uiCtx(b, "/ui/app.js?v="+js.Version, "Accept-Encoding", "gzip, deflate, br")
	b.ReportAllocs()
	b.SetBytes(int64(len(js.Gzip)))
	for b.Loop() {
		ctx.Response.Reset()
		h(ctx)
		if ctx.Response.StatusCode() != 200 || string(ctx.Response.Header.ContentEncoding()) != "gzip" {
			b.Fatalf("%d %q", ctx.Response.StatusCode(), ctx.Response.Header.ContentEncoding())
		}
	}
}

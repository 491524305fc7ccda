package server

import (
	"strconv"
	"strings"
	"sync"

	"github.com/valyala/fasthttp"
)

// Content codings (RFC 9110 8.4). Request bodies in gzip or deflate (the
// zlib format, which Triton's clients and browsers send) are decompressed
// by readBody (body.go), only on the routes that take a body. Responses
// of compressMinBytes or more go out compressed when the request's
// Accept-Encoding allows it and server.response_compression is auto;
// smaller ones gain nothing.

// compressMinBytes is the smallest response body worth compressing.
const compressMinBytes = 1024

var encodeBufs = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledBuf keeps one very large response from pinning memory in the pool.
const maxPooledBuf = 4 << 20

// encodeResponse compresses the response body when the client accepts gzip
// or deflate, the body is large enough, and compressing makes it smaller
// (binary FP32 tensors barely compress, JSON numbers shrink to about a
// third).
func (s *Server) encodeResponse(ctx *fasthttp.RequestCtx) {
	body := ctx.Response.Body()
	if !s.compress || len(body) < compressMinBytes || len(ctx.Response.Header.ContentEncoding()) > 0 {
		return
	}
	coding := acceptedCoding(ctx.Request.Header.Peek(fasthttp.HeaderAcceptEncoding))
	if coding == "" {
		return
	}
	bp := encodeBufs.Get().(*[]byte)
	if coding == "gzip" {
		*bp = fasthttp.AppendGzipBytesLevel((*bp)[:0], body, fasthttp.CompressBestSpeed)
	} else {
		*bp = fasthttp.AppendDeflateBytesLevel((*bp)[:0], body, fasthttp.CompressBestSpeed)
	}
	// Binary tensors of floats hardly compress: send what is smaller.
	if len(*bp) < len(body) {
		ctx.Response.SetBody(*bp) // copied
		ctx.Response.Header.SetContentEncoding(coding)
		ctx.Response.Header.Add(fasthttp.HeaderVary, fasthttp.HeaderAcceptEncoding)
	}
	if cap(*bp) <= maxPooledBuf {
		encodeBufs.Put(bp)
	}
}

// acceptedCoding picks gzip, else deflate, from an Accept-Encoding value
// ("gzip, deflate;q=0.5", "*"); "" when neither is acceptable. A coding
// with q=0 is refused.
func acceptedCoding(h []byte) string {
	if len(h) == 0 {
		return ""
	}
	q := map[string]float64{}
	for _, part := range strings.Split(string(h), ",") {
		name, params, _ := strings.Cut(part, ";")
		name = strings.ToLower(strings.TrimSpace(name))
		weight := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
				weight = f
			}
		}
		q[name] = weight
	}
	ok := func(c string) bool {
		if w, set := q[c]; set {
			return w > 0
		}
		w, set := q["*"]
		return set && w > 0
	}
	switch {
	case ok("gzip") || ok("x-gzip"):
		return "gzip"
	case ok("deflate"):
		return "deflate"
	}
	return ""
}

package server

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/valyala/fasthttp"
)

// Content codings (RFC 9110 8.4). Request bodies in gzip or deflate (the
// zlib format, which Triton's clients and browsers send) are decompressed
// before anything reads them, bounded by server.max_body_bytes. Responses
// of compressMinBytes or more go out compressed when the request's
// Accept-Encoding allows it and server.response_compression is auto;
// smaller ones gain nothing.

// compressMinBytes is the smallest response body worth compressing.
const compressMinBytes = 1024

var (
	gzipReaders sync.Pool // *gzip.Reader
	zlibReaders sync.Pool // io.ReadCloser that is a zlib.Resetter
	codingBufs  = sync.Pool{New: func() any { return new(bytes.Buffer) }}
	encodeBufs  = sync.Pool{New: func() any { return new([]byte) }}
)

// maxPooledBuf keeps one very large body from pinning memory in the pool.
const maxPooledBuf = 4 << 20

// decodeBody replaces a gzip- or deflate-encoded request body with its
// decompressed bytes and drops the Content-Encoding header. An unknown
// coding is a 415, a corrupt body a 400, and a body that decompresses past
// max_body_bytes a 413, whatever its compressed size.
func (s *Server) decodeBody(ctx *fasthttp.RequestCtx) error {
	enc := strings.ToLower(strings.TrimSpace(string(ctx.Request.Header.ContentEncoding())))
	if enc == "" || enc == "identity" {
		return nil
	}
	body := ctx.Request.Body()
	var r io.Reader
	switch enc {
	case "gzip", "x-gzip":
		zr, _ := gzipReaders.Get().(*gzip.Reader)
		var err error
		if zr == nil {
			zr, err = gzip.NewReader(bytes.NewReader(body))
		} else {
			err = zr.Reset(bytes.NewReader(body))
		}
		if err != nil {
			return errorf(http.StatusBadRequest, "Content-Encoding %s: the body is not gzip data: %v", enc, err)
		}
		defer gzipReaders.Put(zr)
		r = zr
	case "deflate":
		zr, _ := zlibReaders.Get().(io.ReadCloser)
		var err error
		if zr == nil {
			zr, err = zlib.NewReader(bytes.NewReader(body))
		} else {
			err = zr.(zlib.Resetter).Reset(bytes.NewReader(body), nil)
		}
		if err != nil {
			return errorf(http.StatusBadRequest, "Content-Encoding deflate: the body is not zlib data: %v", err)
		}
		defer zlibReaders.Put(zr)
		r = zr
	default:
		return errorf(http.StatusUnsupportedMediaType, "Content-Encoding %q is not supported: send gzip, deflate or identity", enc)
	}
	buf := codingBufs.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= maxPooledBuf {
			codingBufs.Put(buf)
		}
	}()
	limit := int64(s.cfg.Server.MaxBodyBytes)
	n, err := buf.ReadFrom(io.LimitReader(r, limit+1))
	switch {
	case n > limit:
		return errorf(http.StatusRequestEntityTooLarge, "request body exceeds server.max_body_bytes (%d bytes) once decompressed", limit)
	case err != nil:
		return errorf(http.StatusBadRequest, "Content-Encoding %s: corrupt body: %v", enc, err)
	}
	ctx.Request.SetBody(buf.Bytes()) // copied
	ctx.Request.Header.Del(fasthttp.HeaderContentEncoding)
	return nil
}

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

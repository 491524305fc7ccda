package server

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/valyala/fasthttp"

	"github.com/inferd/inferd/budget"
	"github.com/inferd/inferd/httperr"
)

// Request bodies are streamed (fasthttp's StreamRequestBody): fasthttp
// reads the headers and at most 8 KiB, and only the routes that take a body
// read the rest, through readBody. Nothing is allocated from a declared
// Content-Length: the buffer grows as bytes arrive, and every growth is
// reserved against the memory budget first, so a client that declares
// 50 MB and trickles holds what it has sent, not what it announced. A
// gzip or deflate body is decompressed the same way, bounded by
// max_body_bytes once decompressed. Routes that take no body never read or
// decompress one; fasthttp drains a small unread body and closes the
// connection on a large one.

// bodyChunk is the first buffer size and the unit a body is read in.
const bodyChunk = 64 << 10

// maxPooledBody bounds the body buffers kept for reuse, so that a spike of
// large bodies does not stay in the pool.
const maxPooledBody = 1 << 20

var (
	bodyBufs    = sync.Pool{New: func() any { return new([]byte) }}
	gzipReaders sync.Pool // *gzip.Reader
	zlibReaders sync.Pool // io.ReadCloser that is a zlib.Resetter
)

// body is a request body read by readBody; release returns its buffer.
type body struct {
	b  []byte
	bp *[]byte // pooled buffer, nil when b is not pooled (too large) or not ours
}

func (b *body) release() {
	if b.bp != nil && cap(b.b) <= maxPooledBody {
		*b.bp = b.b[:0]
		bodyBufs.Put(b.bp)
	}
	b.b, b.bp = nil, nil
}

// readBody reads the request body, at most limit bytes (after
// decompression too), reserving what it allocates on h. The body is
// decompressed when Content-Encoding is gzip or deflate. The caller
// releases the returned body once nothing refers to its bytes.
func (s *Server) readBody(ctx *fasthttp.RequestCtx, h *budget.Hold, limit int) (body, error) {
	enc := strings.ToLower(strings.TrimSpace(string(ctx.Request.Header.ContentEncoding())))
	switch enc {
	case "", "identity", "gzip", "x-gzip", "deflate":
	default:
		return body{}, httperr.Errorf(http.StatusUnsupportedMediaType, "Content-Encoding %q is not supported: send gzip, deflate or identity", enc)
	}
	cl := ctx.Request.Header.ContentLength()
	if cl > limit {
		return body{}, tooLarge(limit, "")
	}
	var raw body
	if r := ctx.RequestBodyStream(); r != nil {
		var err error
		raw, err = readLimited(r, h, limit, cl, "the request body", "")
		if err != nil {
			raw.release()
			var t interface{ Timeout() bool }
			switch {
			case errors.As(err, &t) && t.Timeout():
				return body{}, httperr.Errorf(http.StatusRequestTimeout, "request body not read within server.read_timeout (%s)", s.cfg.Server.ReadTimeout)
			case httperr.Status(err) == http.StatusInternalServerError:
				return body{}, httperr.Errorf(http.StatusBadRequest, "%v", err)
			}
			return body{}, err
		}
	} else {
		// Not streamed (a handler called directly, as tests do): the bytes
		// are already in memory; they count all the same.
		b := ctx.Request.Body()
		if len(b) > limit {
			return body{}, tooLarge(limit, "")
		}
		if err := h.Reserve(int64(len(b)), "the request body"); err != nil {
			return body{}, err
		}
		raw = body{b: b}
	}
	if enc == "" || enc == "identity" {
		return raw, nil
	}
	defer raw.release()
	return decompress(raw.b, enc, h, limit)
}

// decompress undoes a gzip or deflate coding of b, bounded by limit bytes
// and reserved on h as it grows. A corrupt body is a 400, one that
// decompresses past limit a 413, whatever its compressed size.
func decompress(b []byte, enc string, h *budget.Hold, limit int) (body, error) {
	var r io.Reader
	switch enc {
	case "gzip", "x-gzip":
		zr, _ := gzipReaders.Get().(*gzip.Reader)
		var err error
		if zr == nil {
			zr, err = gzip.NewReader(bytes.NewReader(b))
		} else {
			err = zr.Reset(bytes.NewReader(b))
		}
		if err != nil {
			return body{}, httperr.Errorf(http.StatusBadRequest, "Content-Encoding %s: the body is not gzip data: %v", enc, err)
		}
		defer gzipReaders.Put(zr)
		r = zr
	default: // deflate
		zr, _ := zlibReaders.Get().(io.ReadCloser)
		var err error
		if zr == nil {
			zr, err = zlib.NewReader(bytes.NewReader(b))
		} else {
			err = zr.(zlib.Resetter).Reset(bytes.NewReader(b), nil)
		}
		if err != nil {
			return body{}, httperr.Errorf(http.StatusBadRequest, "Content-Encoding deflate: the body is not zlib data: %v", err)
		}
		defer zlibReaders.Put(zr)
		r = zr
	}
	out, err := readLimited(r, h, limit, -1, "the decompressed body", " once decompressed")
	if err != nil {
		out.release()
		if httperr.Status(err) == http.StatusInternalServerError {
			return body{}, httperr.Errorf(http.StatusBadRequest, "Content-Encoding %s: corrupt body: %v", enc, err)
		}
		return body{}, err
	}
	return out, nil
}

// tooLarge is the 413 of a body over limit bytes; suffix says when
// (" once decompressed").
func tooLarge(limit int, suffix string) error {
	return httperr.Errorf(http.StatusRequestEntityTooLarge, "request body exceeds %d bytes%s (server.max_body_bytes, or this route's own limit when smaller)", limit, suffix)
}

// readLimited reads r to its end into a pooled buffer that grows as bytes
// arrive, reserving each growth on h first. size is the expected length
// (a Content-Length), or -1; it only sizes the growth, never allocates
// ahead of the bytes. Past limit bytes it fails with 413.
func readLimited(r io.Reader, h *budget.Hold, limit, size int, what, suffix string) (body, error) {
	bp := bodyBufs.Get().(*[]byte)
	out := body{b: (*bp)[:0], bp: bp}
	if err := h.Reserve(int64(cap(out.b)), what); err != nil {
		return out, err
	}
	for {
		if len(out.b) == cap(out.b) {
			// Grow by doubling, from bodyChunk, never past what may still
			// come: limit+1 bytes (the one over tells a body that is too
			// large), or the declared size when it is smaller.
			next := max(2*cap(out.b), bodyChunk)
			if size >= 0 && size < limit {
				next = min(next, size+1)
			}
			next = min(next, limit+1)
			if next <= len(out.b) {
				next = len(out.b) + 1
			}
			// The new buffer is reserved whole while the old one is still
			// held (the copy needs both), and the old one given back after.
			if err := h.Reserve(int64(next), what); err != nil {
				return out, err
			}
			nb := make([]byte, len(out.b), next)
			copy(nb, out.b)
			old := cap(out.b)
			out.release()
			h.Return(int64(old))
			out.b = nb
			if next <= maxPooledBody {
				out.bp = new([]byte)
			}
		}
		n, err := r.Read(out.b[len(out.b):cap(out.b)])
		out.b = out.b[:len(out.b)+n]
		if len(out.b) > limit {
			return out, tooLarge(limit, suffix)
		}
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("reading %s: %w", what, err)
		}
	}
}

package server

import (
	"bytes"
	"compress/gzip"
	"errors"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/inferd/inferd/budget"
	"github.com/inferd/inferd/config"
	"github.com/inferd/inferd/httperr"
)

// FuzzDecodeBody: whatever arrives with a Content-Encoding, readBody
// either gives a body within max_body_bytes or a 4xx error; it never
// panics, and every byte it reserved is given back.
func FuzzDecodeBody(f *testing.F) {
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write([]byte(`{"inputs":[]}`))
	w.Close()
	f.Add("gzip", gz.Bytes())
	f.Add("deflate", []byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01})
	f.Add("br", []byte("x"))
	f.Add("x-gzip", gz.Bytes()[:10])
	cfg := config.Default()
	cfg.Server.MaxBodyBytes = 1 << 16
	s := &Server{cfg: cfg, budget: budget.New(1<<30, 0, nil)}
	f.Fuzz(func(t *testing.T, coding string, body []byte) {
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod("POST")
		ctx.Request.Header.Set("Content-Encoding", coding)
		ctx.Request.SetBody(body)
		h := s.budget.Hold()
		b, err := s.readBody(&ctx, &h, cfg.Server.MaxBodyBytes)
		n := len(b.b)
		b.release()
		if h.Held() < int64(n) {
			t.Fatalf("a %d-byte body with %d bytes reserved", n, h.Held())
		}
		h.Release()
		if u := s.budget.Used(); u != 0 {
			t.Fatalf("%d bytes still reserved after release", u)
		}
		if err != nil {
			var e *httperr.Error
			if !errors.As(err, &e) || e.Status < 400 || e.Status > 499 {
				t.Fatalf("error %v (%T) is not a 4xx", err, err)
			}
			return
		}
		if n > cfg.Server.MaxBodyBytes {
			t.Fatalf("decoded body of %d bytes beyond the %d limit", n, cfg.Server.MaxBodyBytes)
		}
	})
}

package server

import (
	"bytes"
	"compress/gzip"
	"errors"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/inferd/inferd/config"
)

// FuzzDecodeBody: whatever arrives with a Content-Encoding, decodeBody
// either gives a body within max_body_bytes or a 4xx error; it never
// panics.
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
	s := &Server{cfg: cfg}
	f.Fuzz(func(t *testing.T, coding string, body []byte) {
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod("POST")
		ctx.Request.Header.Set("Content-Encoding", coding)
		ctx.Request.SetBody(body)
		err := s.decodeBody(&ctx)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Code < 400 || e.Code > 499 {
				t.Fatalf("error %v (%T) is not a 4xx", err, err)
			}
			return
		}
		if n := len(ctx.Request.Body()); n > cfg.Server.MaxBodyBytes {
			t.Fatalf("decoded body of %d bytes beyond the %d limit", n, cfg.Server.MaxBodyBytes)
		}
	})
}

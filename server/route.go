package server

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/inferd/inferd/httperr"
	"github.com/inferd/inferd/kserve"
)

// Endpoint names used as the endpoint label of request metrics.
const (
	epHealth   = "health"
	epMetadata = "metadata"
	epInfer    = "infer"
	epClassify = "classify"
	epRecog    = "recognize"
	epUpload   = "upload"
	epMetrics  = "metrics"
	epUI       = "ui"
	epOther    = "other"
)

// handle routes a request. Paths follow the KServe v2 REST protocol:
//
//	GET  /v2                                   server metadata
//	GET  /v2/health/live | /v2/health/ready
//	GET  /v2/models/M[/versions/V]             model metadata
//	GET  /v2/models/M[/versions/V]/ready
//	POST /v2/models/M[/versions/V]/infer       KServe v2 inference
//	POST /v2/models/M[/versions/V]/classify    an image -> top-k labels
//	GET  /v2/models/M[/versions/V]/config      Triton's model configuration
//	GET  /v2/models[/M[/versions/V]]/stats     Triton's model statistics
//	POST /v2/repository/index                  Triton's model repository index
//	POST /v2/repository/models/M/(un)load      refused: models come from the config
//	POST /upload                               multipart image -> an id for /recognize
//	POST /recognize                            multipart image (or an upload's id) -> top 3
//	GET  /metrics                              Prometheus text
//	GET  /  and  /ui/NAME                      the web page (ui.go), without a key
//	GET  /v2/ui/status                         the web page's live view
func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	s.stats.inFlight.Inc()
	ctx.Response.Header.Set("X-Inferd-Replica", s.replica)
	var modelName, endpoint string
	if c := limited(ctx.Conn()); c != nil && c.reserve {
		// A connection over max_connections or its client's
		// max_connections_per_client: health checks and scrapes only, then
		// it closes to free the reserve.
		ctx.SetConnectionClose()
		if p := string(ctx.Path()); p != "/v2/health/live" && p != "/v2/health/ready" && p != "/metrics" {
			writeError(ctx, httperr.Errorf(http.StatusServiceUnavailable, "connection over server.max_connections (%d) or max_connections_per_client (%d): only health checks and /metrics are served on it; retry shortly",
				s.cfg.Server.MaxConnections, s.cfg.Server.MaxConnectionsPerClient))
			s.stats.inFlight.Dec()
			s.stats.observe("", epOther, ctx.Response.StatusCode(), time.Since(start))
			return
		}
	}
	modelName, endpoint = s.route(ctx)
	s.encodeResponse(ctx)
	s.stats.inFlight.Dec()
	s.stats.observe(modelName, endpoint, ctx.Response.StatusCode(), time.Since(start))
}

func (s *Server) route(ctx *fasthttp.RequestCtx) (model, endpoint string) {
	path := ctx.Path()
	switch string(path) {
	case "/v2/health/live":
		return "", s.only(ctx, "GET", epHealth, func(ctx *fasthttp.RequestCtx) { writeJSON(ctx, 200, `{"live":true}`) })
	case "/v2/health/ready":
		return "", s.only(ctx, "GET", epHealth, s.serverReady)
	case "/":
		return "", s.only(ctx, "GET", epUI, s.servePage)
	}
	if asset, ok := bytes.CutPrefix(path, []byte("/ui/")); ok {
		return "", s.only(ctx, "GET", epUI, func(ctx *fasthttp.RequestCtx) { s.serveAsset(ctx, asset) })
	}
	// Every other route asks guard first (auth:), with the model its path
	// names as the gateway reads it: before anything is looked up or read.
	rest, ok := bytes.CutPrefix(path, []byte("/v2/models/"))
	var name []byte
	if ok {
		name, rest, _ = bytes.Cut(rest, []byte("/"))
	}
	repo, isRepo := bytes.CutPrefix(path, []byte("/v2/repository/models/"))
	if isRepo {
		name, _, _ = bytes.Cut(repo, []byte("/"))
	}
	if !bytes.HasPrefix(path, []byte("/v2/health/")) && !s.guard(ctx, name, path) {
		if string(path) == "/metrics" {
			return "", epMetrics
		}
		return "", epOther
	}
	switch string(path) {
	case "/metrics":
		return "", s.only(ctx, "GET", epMetrics, s.serveMetrics)
	case "/v2":
		return "", s.only(ctx, "GET", epMetadata, s.serverMetadata)
	case "/v2/repository/index":
		return "", s.only(ctx, "POST", epMetadata, s.repositoryIndex)
	case "/v2/ui/status":
		return "", s.only(ctx, "GET", epUI, s.uiStatus)
	case "/recognize":
		name := ""
		if ms := s.Models(); len(ms) > 0 {
			name = ms[0].Name
		}
		return name, s.only(ctx, "POST", epRecog, func(ctx *fasthttp.RequestCtx) { s.recognize(ctx, name) })
	case "/upload":
		name := ""
		if ms := s.Models(); len(ms) > 0 {
			name = ms[0].Name
		}
		return name, s.only(ctx, "POST", epUpload, func(ctx *fasthttp.RequestCtx) { s.upload(ctx, name) })
	}
	if isRepo {
		name, action, _ := bytes.Cut(repo, []byte("/"))
		if string(action) == "load" || string(action) == "unload" {
			// No model label: the name is the client's, and labels must not
			// grow with what clients send.
			return "", s.only(ctx, "POST", epMetadata, func(ctx *fasthttp.RequestCtx) { s.modelControl(ctx, name, action) })
		}
	}
	if statsPath(path) {
		return "", s.only(ctx, "GET", epMetadata, func(ctx *fasthttp.RequestCtx) { s.modelStatistics(ctx, nil) })
	}
	if !ok {
		writeError(ctx, httperr.Errorf(http.StatusNotFound, "no route for %s %s", ctx.Method(), path))
		return "", epOther
	}
	m := s.models.Acquire(string(name))
	if m == nil {
		if s.loading.Load() && s.configured(string(name)) {
			writeError(ctx, httperr.Errorf(http.StatusServiceUnavailable, "model %q is loading", name))
			return "", epOther
		}
		writeError(ctx, httperr.Errorf(http.StatusNotFound, "unknown model %q (this server has %s)", name, s.modelList()))
		return "", epOther
	}
	defer m.Release()
	if v, after, ok := bytes.Cut(rest, []byte("/")); ok && string(v) == "versions" {
		version, tail, _ := bytes.Cut(after, []byte("/"))
		if string(version) != "1" {
			writeError(ctx, httperr.Errorf(http.StatusNotFound, "model %q has no version %q (it has version 1)", m.Name, version))
			return m.Name, epOther
		}
		rest = tail
	} else if string(rest) == "versions" {
		writeError(ctx, httperr.Errorf(http.StatusNotFound, "no route for %s %s", ctx.Method(), path))
		return m.Name, epOther
	}
	switch string(rest) {
	case "":
		return m.Name, s.only(ctx, "GET", epMetadata, func(ctx *fasthttp.RequestCtx) { s.modelMetadata(ctx, m) })
	case "ready":
		return m.Name, s.only(ctx, "GET", epHealth, func(ctx *fasthttp.RequestCtx) { s.modelReady(ctx, m) })
	case "infer":
		return m.Name, s.only(ctx, "POST", epInfer, func(ctx *fasthttp.RequestCtx) { s.infer(ctx, m) })
	case "classify":
		return m.Name, s.only(ctx, "POST", epClassify, func(ctx *fasthttp.RequestCtx) { s.classify(ctx, m) })
	case "config":
		return m.Name, s.only(ctx, "GET", epMetadata, func(ctx *fasthttp.RequestCtx) { s.modelConfig(ctx, m) })
	case "stats":
		return m.Name, s.only(ctx, "GET", epMetadata, func(ctx *fasthttp.RequestCtx) { s.modelStatistics(ctx, m) })
	}
	writeError(ctx, httperr.Errorf(http.StatusNotFound, "no route for %s %s", ctx.Method(), path))
	return m.Name, epOther
}

// only runs h when the method is method (HEAD too for GET), else answers 405.
func (s *Server) only(ctx *fasthttp.RequestCtx, method, endpoint string, h fasthttp.RequestHandler) string {
	got := string(ctx.Method())
	if got != method && !(method == "GET" && got == "HEAD") {
		ctx.Response.Header.Set("Allow", method)
		writeError(ctx, httperr.Errorf(http.StatusMethodNotAllowed, "method %s not allowed on %s: use %s", got, ctx.Path(), method))
		return endpoint
	}
	if method == "GET" {
		if err := discardBody(ctx); err != nil {
			writeError(ctx, err)
			return endpoint
		}
	}
	h(ctx)
	return endpoint
}

// maxIgnoredBody is the most of a body that a route taking none reads and
// throws away (never decompressing nor keeping it) before it answers, so
// that the client has sent it all when the answer comes: a connection
// closed on unread bytes can lose the answer to a TCP reset.
const maxIgnoredBody = 1 << 20

// discardBody reads and drops the body of a request to a route that takes
// none; past maxIgnoredBody it is a 413 and the connection closes.
func discardBody(ctx *fasthttp.RequestCtx) error {
	r := ctx.RequestBodyStream()
	if r == nil || ctx.Request.Header.ContentLength() == 0 {
		return nil
	}
	n, err := io.CopyN(io.Discard, r, maxIgnoredBody+1)
	switch {
	case n > maxIgnoredBody:
		ctx.SetConnectionClose()
		return httperr.Errorf(http.StatusRequestEntityTooLarge, "%s takes no request body; this one is over %d bytes", ctx.Path(), maxIgnoredBody)
	case err != nil && err != io.EOF:
		ctx.SetConnectionClose()
		return httperr.Errorf(http.StatusBadRequest, "reading the request body: %v", err)
	}
	return nil
}

// configured reports whether name is a model of the startup configuration.
func (s *Server) configured(name string) bool {
	for _, c := range s.cfg.Models {
		if c.Name == name {
			return true
		}
	}
	return false
}

func (s *Server) modelList() string {
	b := []byte{}
	for i, m := range s.Models() {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = strconv.AppendQuote(b, m.Name)
	}
	if len(b) == 0 {
		return "no models loaded"
	}
	return string(b)
}

// handleTransportError answers errors fasthttp meets before a handler runs:
// a body over the limit, a malformed request, a read timeout, a request
// line or headers over the read buffer; a failed TLS handshake it counts.
// The answer never echoes the request (fasthttp's error texts quote up to
// 4 KiB of it).
func (s *Server) handleTransportError(ctx *fasthttp.RequestCtx, err error) {
	if c, ok := ctx.Conn().(*tlsConn); ok && !c.ConnectionState().HandshakeComplete {
		// A TLS handshake that failed or never finished (TLS 1.0 or 1.1,
		// plain HTTP on the HTTPS port, a client that stalled): there is no
		// HTTP to answer, nor a request to count.
		s.stats.connRejected("tls_handshake")
		return
	}
	ctx.Response.Header.Set("X-Inferd-Replica", s.replica)
	var te interface{ Timeout() bool }
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		writeError(ctx, httperr.Errorf(http.StatusRequestEntityTooLarge, "request body exceeds server.max_body_bytes (%d bytes)", s.cfg.Server.MaxBodyBytes))
	case errors.As(err, &te) && te.Timeout():
		writeError(ctx, httperr.Errorf(http.StatusRequestTimeout, "request not read within server.read_timeout (%s)", s.cfg.Server.ReadTimeout))
	case errors.As(err, &small):
		if c := limited(ctx.Conn()); c != nil && c.inFirstLine() {
			writeError(ctx, httperr.Errorf(http.StatusRequestURITooLong, "request line longer than %d bytes: shorten the URL", readBufferSize))
		} else {
			writeError(ctx, httperr.Errorf(http.StatusRequestHeaderFieldsTooLarge, "request headers larger than %d bytes", readBufferSize))
		}
	default:
		writeError(ctx, httperr.Errorf(http.StatusBadRequest, "malformed HTTP/1.1 request: the request line, headers or chunked body could not be parsed"))
	}
	s.stats.observe("", epOther, ctx.Response.StatusCode(), 0)
}

// writeError answers err as {"error": "..."} with the status it carries;
// 503s say when to retry.
func writeError(ctx *fasthttp.RequestCtx, err error) {
	code := httperr.Status(err)
	if code == http.StatusServiceUnavailable || code == http.StatusTooManyRequests {
		ctx.Response.Header.Set("Retry-After", retryAfter(err))
	}
	ctx.Response.Header.Del(headerInferenceLength)
	ctx.SetContentType("application/json")
	ctx.SetStatusCode(code)
	ctx.SetBody(kserve.AppendError(nil, err.Error()))
}

func writeJSON(ctx *fasthttp.RequestCtx, code int, body string) {
	ctx.SetContentType("application/json")
	ctx.SetStatusCode(code)
	ctx.SetBodyString(body)
}

// retryAfter is the Retry-After value for err: the whole seconds its
// httperr.RetryAfter says (rounded up), at least 1.
func retryAfter(err error) string {
	if d := httperr.RetryAfter(err); d > time.Second {
		return strconv.Itoa(int((d + time.Second - 1) / time.Second))
	}
	return "1"
}

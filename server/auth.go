package server

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/inferd/inferd/auth"
	"github.com/inferd/inferd/config"
	"github.com/inferd/inferd/httperr"
	"github.com/inferd/inferd/tlscert"
)

// HeaderTenant is the header the HAProxy gateway sets (always overwriting
// what a client sent) to the tenant of the request's key. With auth off a
// replica counts requests under it (inferd_tenant_requests_total), if it
// names a tenant of auth.tenants or the keys file, else under "other".
const HeaderTenant = "X-Inferd-Tenant"

// guard asks package auth whether the request may go on to path, a route
// that names model (nil: none), and counts it for its tenant. When it may
// not, guard answers the refusal (401 with WWW-Authenticate: Bearer, 403,
// or 429 with Retry-After) and returns false. Routing calls it for every
// route but the health checks as soon as it knows the model: before the
// model is looked up or admitted and before a byte of the body is read,
// so a refused request costs a hash and a map lookup. The model is the
// one the path names, as the HAProxy gateway reads it (the statistics of
// every model, /v2/models/stats, name "stats"), so that a key is refused
// at a lone replica where the gateway refuses it.
func (s *Server) guard(ctx *fasthttp.RequestCtx, model, path []byte) bool {
	h := &ctx.Request.Header
	err := s.auth.Check(auth.Request{
		Authorization: h.Peek("Authorization"),
		APIKey:        h.Peek("X-API-Key"),
		Tenant:        h.Peek(HeaderTenant),
		Model:         model,
		DefaultModel:  string(path) == "/recognize" || string(path) == "/upload",
		Metrics:       string(path) == "/metrics",
	})
	if err == nil {
		return true
	}
	if httperr.Status(err) == http.StatusUnauthorized {
		ctx.Response.Header.Set("WWW-Authenticate", "Bearer")
	}
	writeError(ctx, err)
	return false
}

// Auth returns the server's API key checks and tenant counts.
func (s *Server) Auth() *auth.Auth { return s.auth }

// LoadSecurity reads the keys file (auth:) and the TLS certificate (tls:)
// of cfg and uses them from the next request and handshake on. A part that
// fails keeps what it had; the error says every problem, one line each,
// with the key as the file writes it. Serve calls it with the server's
// config unless it was called before; a SIGHUP reload calls it with the
// new config. Turning TLS on or off once serving needs a restart: asking
// for it is an error (the keys are still loaded).
func (s *Server) LoadSecurity(cfg *config.Config) error {
	s.secMu.Lock()
	defer s.secMu.Unlock()
	var errs []error
	if err := s.auth.Load(cfg.Auth); err != nil {
		errs = append(errs, prefixLines("auth.", err)...)
	}
	switch on := cfg.TLS.Enabled(); {
	case s.serving && on != (s.tls != nil):
		errs = append(errs, fmt.Errorf("tls: turning TLS on or off needs a restart; serving %s as before", map[bool]string{true: "HTTPS", false: "HTTP"}[s.tls != nil]))
	case !on:
		s.tls = nil
	case s.tls == nil:
		st, err := tlscert.Load(cfg.TLS)
		if err != nil {
			errs = append(errs, prefixLines("tls.", err)...)
		} else {
			s.tls = st
		}
	default:
		if err := s.tls.Reload(cfg.TLS); err != nil {
			errs = append(errs, prefixLines("tls.", err)...)
		}
	}
	s.secured = len(errs) == 0 || s.secured
	return errors.Join(errs...)
}

// prefixLines prefixes each line of err with prefix: the section's key.
func prefixLines(prefix string, err error) []error {
	var errs []error
	for line := range strings.SplitSeq(err.Error(), "\n") {
		errs = append(errs, errors.New(prefix+line))
	}
	return errs
}

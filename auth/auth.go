// Package auth is the API gateway of a replica that serves without the
// HAProxy gateway in front (configs/haproxy.cfg), with the same semantics
// and the same errors: API keys, stored as their SHA-256 in a keys file and
// compared in constant time, each belonging to a tenant; per tenant, the
// models it may use and a token bucket for its rate; and a count of
// requests per tenant, under a bounded set of names. It knows nothing of
// HTTP beyond the headers' values and the statuses of its errors
// (*httperr.Error: 401, 403, 429).
package auth

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Help describes the metric families of this package, for the HELP lines
// of /metrics.
var Help = map[string]string{
	"inferd_tenant_requests_total": `Requests by tenant: the tenant of the API key (auth.enabled), else the X-Inferd-Tenant header the HAProxy gateway sets; names not in the keys file nor auth.tenants count as "other".`,
}

// Auth checks requests against the keys file and settings loaded last. It
// is safe for concurrent use: Check reads one immutable snapshot, Load
// swaps in another.
type Auth struct {
	set   *metrics.Set
	other *metrics.Counter
	// now is the monotonic clock the token buckets run on.
	now func() time.Duration

	mu    sync.Mutex // serialises Load
	state atomic.Pointer[state]
}

// state is one loaded keys file and settings; never changed once stored.
type state struct {
	settings Settings
	// checkRoutes: routes other than /metrics need a key (enabled);
	// checkMetrics: /metrics needs one (metrics_key).
	checkRoutes, checkMetrics bool
	byHash                    map[[sha256.Size]byte]keyEntry
	byName                    map[string]*tenant // every known tenant
}

type keyEntry struct {
	hash [sha256.Size]byte
	t    *tenant
}

// tenant is a known tenant: of the keys file (cfg set) or only named in
// auth.tenants (cfg nil: counted, never authenticated).
type tenant struct {
	cfg      *TenantConfig
	bucket   *Bucket
	requests *metrics.Counter
}

// New returns an Auth with nothing loaded: every route open, every tenant
// header counted as "other". Its counters go to set (nil: a new set).
func New(set *metrics.Set) *Auth {
	if set == nil {
		set = metrics.NewSet()
	}
	epoch := time.Now()
	a := &Auth{set: set, now: func() time.Duration { return time.Since(epoch) }}
	a.other = set.GetOrCreateCounter(counterName(Other))
	a.state.Store(&state{})
	return a
}

func counterName(tenant string) string {
	return `inferd_tenant_requests_total{tenant="` + tenant + `"}`
}

// Load reads the keys file s names and checks requests with it and s from
// the next one on. A tenant that was known before keeps its token bucket's
// state (a reload does not refill it) and its counter. On an error (the
// file's problems, one line each, after its key and path) nothing changes.
func (a *Auth) Load(s Settings) error {
	if err := s.Validate(); err != nil {
		return err
	}
	var keys *Keys
	if s.KeysFile != "" {
		var err error
		if keys, err = ReadKeys(s.KeysFile); err != nil {
			return fmt.Errorf("keys_file %q: %w", s.KeysFile, err)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.state.Load()
	now := a.now()
	st := &state{settings: s, checkRoutes: s.Enabled, checkMetrics: s.MetricsKey,
		byHash: map[[sha256.Size]byte]keyEntry{}, byName: map[string]*tenant{}}
	add := func(name string, cfg *TenantConfig) *tenant {
		t := &tenant{cfg: cfg, bucket: NewBucket(0, 0), requests: a.set.GetOrCreateCounter(counterName(name))}
		if cfg != nil {
			t.bucket = NewBucket(cfg.Rate, cfg.Burst)
			if prev := old.byName[name]; prev != nil {
				t.bucket.inherit(prev.bucket, now)
			}
		}
		st.byName[name] = t
		return t
	}
	if keys != nil {
		for _, cfg := range keys.tenants {
			add(cfg.Name, cfg)
		}
		for sum, cfg := range keys.byHash {
			st.byHash[sum] = keyEntry{hash: sum, t: st.byName[cfg.Name]}
		}
	}
	for _, name := range s.Tenants {
		if st.byName[name] == nil {
			add(name, nil)
		}
	}
	a.state.Store(st)
	return nil
}

// Settings returns the settings loaded last.
func (a *Auth) Settings() Settings { return a.state.Load().settings }

// Request is what Check needs of an HTTP request.
type Request struct {
	// Authorization, APIKey and Tenant are the values of the
	// Authorization, X-API-Key and X-Inferd-Tenant headers; nil or empty
	// when absent.
	Authorization, APIKey, Tenant []byte
	// Model is the model the route names, as the HAProxy gateway reads it
	// from the path (/v2/models/M/..., /v2/repository/models/M/...); nil
	// for routes that name none (server metadata, the repository index).
	Model []byte
	// DefaultModel says the route runs a model the request does not name
	// (/recognize): only a tenant allowed every model ("*") may use it, as
	// at the gateway, which cannot know a replica's default model.
	DefaultModel bool
	// Metrics says the route is /metrics.
	Metrics bool
}

// Check decides whether r may proceed, and counts it for its tenant. A
// route that needs no key (auth.enabled off; /metrics without
// auth.metrics_key) proceeds, counted under its X-Inferd-Tenant header when
// it has one. Otherwise the key decides the tenant (a missing, malformed
// or unknown one counts as "other"), and Check returns, as an
// *httperr.Error: 401 for a key that is missing, malformed or unknown; 403
// for a model (or /metrics, or the default model) the tenant may not use;
// 429, with RetryAfter,
// for a tenant over its rate. Health checks are not asked about.
//
// A key is hashed and its hash looked up, then compared in constant time:
// no key is kept in clear, and the time taken says nothing of how close a
// key came. Check allocates nothing for a request it lets through.
func (a *Auth) Check(r Request) error {
	st := a.state.Load()
	if r.Metrics && !st.checkMetrics || !r.Metrics && !st.checkRoutes {
		if len(r.Tenant) > 0 && !r.Metrics {
			a.count(st, r.Tenant)
		}
		return nil
	}
	key, err := Key(r.Authorization, r.APIKey)
	if err != nil {
		a.other.Inc()
		return err
	}
	sum := sha256.Sum256(key)
	e, ok := st.byHash[sum]
	if !ok || subtle.ConstantTimeCompare(sum[:], e.hash[:]) != 1 {
		a.other.Inc()
		return errUnknown
	}
	t := e.t
	t.requests.Inc()
	switch {
	case r.Metrics && !t.cfg.Metrics:
		return errMetrics
	case r.Model != nil && !t.cfg.Allows(r.Model):
		return modelNotAllowed(r.Model)
	case r.DefaultModel && !slices.Contains(t.cfg.Models, "*"):
		return errDefaultModel
	}
	if ok, wait := t.bucket.Take(a.now()); !ok {
		return rateLimited(t.cfg.Rate, wait)
	}
	return nil
}

// count counts a request of the tenant named name: under that name when
// it is known, else as "other".
func (a *Auth) count(st *state, name []byte) {
	if t := st.byName[string(name)]; t != nil {
		t.requests.Inc()
		return
	}
	a.other.Inc()
}

// Key returns the API key of a request whose Authorization and X-API-Key
// headers have these values (nil or empty when absent), as the HAProxy
// gateway takes it: from "Authorization: Bearer KEY" (the scheme in any
// case, then spaces, then a key without spaces) when that header has this
// form, else from X-API-Key. The error is ErrMissingKey when neither gives
// a key, ErrMalformedKey for a key longer than MaxKeyLen or with bytes
// other than visible ASCII, each an *httperr.Error with status 401. The
// key returned is part of the header value, not a copy.
func Key(authorization, apiKey []byte) ([]byte, error) {
	key, ok := bearer(authorization)
	if !ok {
		if key = trimSpace(apiKey); len(key) == 0 {
			return nil, errMissing
		}
	}
	if len(key) > MaxKeyLen {
		return nil, errMalformed
	}
	for _, c := range key {
		if c < 0x21 || c > 0x7e {
			return nil, errMalformed
		}
	}
	return key, nil
}

// bearer returns the KEY of an Authorization header "Bearer KEY", and
// whether it has that form.
func bearer(h []byte) ([]byte, bool) {
	h = trimSpace(h)
	const scheme = "Bearer "
	if len(h) <= len(scheme) || !bytes.EqualFold(h[:len(scheme)], []byte(scheme)) {
		return nil, false
	}
	key := trimSpace(h[len(scheme):])
	if len(key) == 0 || bytes.IndexByte(key, ' ') >= 0 {
		return nil, false
	}
	return key, true
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// Tenants returns the names requests are counted under, besides "other":
// the keys file's tenants and auth.tenants.
func (a *Auth) Tenants() []string {
	st := a.state.Load()
	names := make([]string, 0, len(st.byName))
	for name := range st.byName {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

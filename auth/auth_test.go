package auth

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/inferd/inferd/httperr"
)

// writeKeys writes a keys file in a test directory and returns its path.
func writeKeys(t testing.TB, dir, body string) string {
	t.Helper()
	p := filepath.Join(dir, "keys.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const testKeys = `
tenants:
  team-a:
    keys: [%a]
    models: ["*"]
    rate: 1
    burst: 2
  team-b:
    keys: [%b]
    models: [resnet50, "tiny*"]
  scraper:
    keys: [%s]
    metrics: true
`

func testKeysFile(t testing.TB) string {
	r := strings.NewReplacer("%a", HashKey("key-a"), "%b", HashKey("key-b"), "%s", HashKey("key-s"))
	return writeKeys(t, t.TempDir(), r.Replace(testKeys))
}

// newTestAuth loads s with a clock the test sets.
func newTestAuth(t testing.TB, s Settings) (*Auth, *metrics.Set, *time.Duration) {
	t.Helper()
	set := metrics.NewSet()
	a := New(set)
	var now time.Duration
	a.now = func() time.Duration { return now }
	if err := a.Load(s); err != nil {
		t.Fatal(err)
	}
	return a, set, &now
}

func counted(set *metrics.Set, tenant string) uint64 {
	return set.GetOrCreateCounter(counterName(tenant)).Get()
}

func withBearer(key string) []byte { return []byte("Bearer " + key) }

// What each request gets, in order, on one Auth: the errors and statuses
// a client sees.
func TestCheck(t *testing.T) {
	a, set, now := newTestAuth(t, Settings{Enabled: true, KeysFile: testKeysFile(t), MetricsKey: true})
	for _, c := range []struct {
		name   string
		r      Request
		status int    // 0: let through
		want   string // the error's text
		is     error
	}{
		{"no key", Request{Model: []byte("resnet50")}, 401, "missing API key: send Authorization: Bearer KEY or X-API-Key: KEY", ErrMissingKey},
		{"unknown key", Request{Authorization: withBearer("key-x"), Model: []byte("resnet50")}, 401, "unknown API key", ErrUnknownKey},
		// Another scheme is no key, as at the gateway.
		{"Basic, not Bearer", Request{Authorization: []byte("Basic a2V5LWE="), Model: []byte("m")}, 401, "missing API key: send Authorization: Bearer KEY or X-API-Key: KEY", ErrMissingKey},
		{"an odd byte", Request{Authorization: []byte("Bearer key\x01a"), Model: []byte("m")}, 401, "malformed API key", ErrMalformedKey},
		{"bearer in lower case", Request{Authorization: []byte("bearer  key-a "), Model: []byte("m")}, 0, "", nil},
		{"X-API-Key", Request{APIKey: []byte("key-b"), Model: []byte("tiny-uint8")}, 0, "", nil},
		// Authorization wins over X-API-Key.
		{"both headers", Request{Authorization: withBearer("key-x"), APIKey: []byte("key-b"), Model: []byte("tiny")}, 401, "unknown API key", ErrUnknownKey},
		{"model outside the tenant", Request{APIKey: []byte("key-b"), Model: []byte("secret-model")}, 403, `model "secret-model" is not allowed for this key`, ErrModelNotAllowed},
		{"a route of no model", Request{APIKey: []byte("key-s")}, 0, "", nil},
		// /recognize runs the default model: only a tenant allowed every
		// model may use it.
		{"the default model, some models allowed", Request{APIKey: []byte("key-b"), DefaultModel: true}, 403,
			"/recognize runs the default model of a replica: only a key allowed every model may use it", ErrModelNotAllowed},
		{"metrics with a metrics key", Request{APIKey: []byte("key-s"), Metrics: true}, 0, "", nil},
		{"metrics with another key", Request{APIKey: []byte("key-b"), Metrics: true}, 403, "/metrics is not allowed for this key", ErrMetricsNotAllowed},
		{"metrics with no key", Request{Metrics: true}, 401, "missing API key: send Authorization: Bearer KEY or X-API-Key: KEY", ErrMissingKey},
		// team-a: burst 2 at 1/s; "bearer in lower case" took one.
		{"team-a's burst", Request{Authorization: withBearer("key-a"), Model: []byte("m")}, 0, "", nil},
		{"team-a over its rate", Request{Authorization: withBearer("key-a"), Model: []byte("m")}, 429, "rate limit of 1 requests/s exceeded for this key", ErrRateLimited},
		{"team-b meanwhile", Request{Authorization: withBearer("key-b"), Model: []byte("resnet50")}, 0, "", nil},
	} {
		err := a.Check(c.r)
		if c.status == 0 {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if err == nil || httperr.Status(err) != c.status || err.Error() != c.want || !errors.Is(err, c.is) {
			t.Errorf("%s: %d %v; want %d %s", c.name, httperr.Status(err), err, c.status, c.want)
		}
	}
	err := a.Check(Request{Authorization: withBearer("key-a"), Model: []byte("m")})
	if d := httperr.RetryAfter(err); d != time.Second {
		t.Errorf("Retry-After %s, want 1s", d)
	}
	*now += time.Second
	if err := a.Check(Request{Authorization: withBearer("key-a"), Model: []byte("m")}); err != nil {
		t.Errorf("a second on: %v", err)
	}
	// Every request with a key of a tenant counts for it, refused or not;
	// the rest count as other.
	for tenant, want := range map[string]uint64{"team-a": 5, "team-b": 5, "scraper": 2, Other: 6} {
		if got := counted(set, tenant); got != want {
			t.Errorf("%s: %d requests counted, want %d", tenant, got, want)
		}
	}
}

// With auth off, every route is open, and a request is counted under its
// X-Inferd-Tenant header when that names a tenant known from auth.tenants
// or the keys file; anything else is other, so the series stay bounded.
func TestCountTenantHeader(t *testing.T) {
	a, set, _ := newTestAuth(t, Settings{KeysFile: testKeysFile(t), Tenants: []string{"gateway-only"}})
	for _, h := range []string{"team-a", "gateway-only", "forged-1", "forged-2", "team-a", `x"} 1`, ""} {
		if err := a.Check(Request{Tenant: []byte(h), Model: []byte("m")}); err != nil {
			t.Fatalf("tenant %q: %v", h, err)
		}
	}
	// A scrape is not a tenant's request.
	a.Check(Request{Tenant: []byte("team-a"), Metrics: true})
	for tenant, want := range map[string]uint64{"team-a": 2, "gateway-only": 1, Other: 3} {
		if got := counted(set, tenant); got != want {
			t.Errorf("%s: %d, want %d", tenant, got, want)
		}
	}
	var b strings.Builder
	set.WritePrometheus(&b)
	if n := strings.Count(b.String(), "inferd_tenant_requests_total{"); n != 5 {
		t.Errorf("%d tenant series, want 5 (team-a, team-b, scraper, gateway-only, other):\n%s", n, b.String())
	}
	if got := strings.Join(a.Tenants(), " "); got != "gateway-only scraper team-a team-b" {
		t.Errorf("Tenants() = %q", got)
	}
}

// A reload swaps the keys (a revoked key is refused from the next
// request), keeps a tenant's bucket as it was, and a file that does not
// load changes nothing.
func TestLoadReload(t *testing.T) {
	dir := t.TempDir()
	path := writeKeys(t, dir, "tenants:\n  a: {keys: ["+HashKey("k1")+"], models: ['*'], rate: 1, burst: 1}\n")
	a, _, _ := newTestAuth(t, Settings{Enabled: true, KeysFile: path})
	ok := func(key string) error { return a.Check(Request{APIKey: []byte(key), Model: []byte("m")}) }
	if err := ok("k1"); err != nil {
		t.Fatal(err)
	}
	writeKeys(t, dir, "tenants:\n  a: {keys: ["+HashKey("k2")+"], models: ['*'], rate: 1, burst: 1}\n")
	if err := a.Load(Settings{Enabled: true, KeysFile: path}); err != nil {
		t.Fatal(err)
	}
	if err := ok("k1"); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("a revoked key: %v", err)
	}
	if err := ok("k2"); !errors.Is(err, ErrRateLimited) {
		t.Errorf("the tenant's bucket was refilled by the reload: %v", err)
	}
	writeKeys(t, dir, "tenants:\n  a: {keys: [nope]}\n")
	err := a.Load(Settings{Enabled: true, KeysFile: path})
	if want := `keys_file "` + path + `": tenants.a.keys[0]: want 64 hex digits`; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("a bad file: %v", err)
	}
	if err := ok("k1"); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("after a failed reload: %v", err)
	}
	// Turning auth off opens every route.
	if err := a.Load(Settings{}); err != nil || ok("") != nil {
		t.Errorf("auth off: %v %v", err, ok(""))
	}
}

func TestSettings(t *testing.T) {
	for _, c := range []struct {
		s    Settings
		want string
	}{
		{Settings{}, ""},
		{Settings{Enabled: true}, "keys_file: required when enabled is true"},
		{Settings{MetricsKey: true}, "keys_file: required when metrics_key is true"},
		{Settings{Tenants: []string{"a", "other", "a", "b c"}},
			"tenants[1] \"other\": \"other\" counts the requests of no known tenant: choose another name\ntenants[2] \"a\": listed twice\ntenants[3] \"b c\": want only A-Z a-z 0-9 . _ -"},
	} {
		err := c.s.Validate()
		if got := ""; err != nil {
			got = err.Error()
			if got != c.want {
				t.Errorf("%+v: %s, want %s", c.s, got, c.want)
			}
		} else if c.want != "" {
			t.Errorf("%+v: no error, want %s", c.s, c.want)
		}
	}
	missing := filepath.Join(t.TempDir(), "keys.yaml")
	err := Settings{Enabled: true, KeysFile: missing}.Check()
	if want := `keys_file "` + missing + `": no such file or directory`; err == nil || err.Error() != want {
		t.Errorf("Check: %v, want %s", err, want)
	}
	if err := (Settings{Enabled: true, KeysFile: testKeysFile(t)}).Check(); err != nil {
		t.Errorf("Check of a good file: %v", err)
	}
}

// What Key takes and refuses, header by header: nothing a client sends is
// a 500 or a copy.
func TestKey(t *testing.T) {
	long := strings.Repeat("k", MaxKeyLen)
	for _, c := range []struct {
		authz, apiKey string
		key           string
		err           error
	}{
		{"Bearer abc", "", "abc", nil},
		{"BEARER abc", "", "abc", nil},
		{"  Bearer   abc  ", "", "abc", nil},
		{"", " abc ", "abc", nil},
		{"Bearer " + long, "", long, nil},
		{"Bearer abc", "xyz", "abc", nil}, // Authorization first
		// A header not of the form "Bearer KEY" gives no key: X-API-Key
		// does, or the key is missing (as at the gateway).
		{"", "", "", ErrMissingKey},
		{"Bearer", "", "", ErrMissingKey},
		{"Bearer ", "abc", "abc", nil},
		{"Basic YWJj", "", "", ErrMissingKey},
		{"Basic YWJj", "abc", "abc", nil},
		{"Bearerabc", "", "", ErrMissingKey},
		{"Bearer a b", "", "", ErrMissingKey},
		// Keys the gateway would hash and not find: malformed here.
		{"Bearer a\x00b", "", "", ErrMalformedKey},
		{"Bearer a\tb", "", "", ErrMalformedKey},
		{"Bearer caf\xc3\xa9", "", "", ErrMalformedKey},
		{"", "a\x7fb", "", ErrMalformedKey},
		{"", "a b", "", ErrMalformedKey},
		{"Bearer " + long + "k", "", "", ErrMalformedKey},
		{"", long + "k", "", ErrMalformedKey},
	} {
		key, err := Key([]byte(c.authz), []byte(c.apiKey))
		if !errors.Is(err, c.err) || string(key) != c.key {
			t.Errorf("Key(%q, %q) = %q, %v; want %q, %v", c.authz, c.apiKey, key, err, c.key, c.err)
		}
		if err != nil && httperr.Status(err) != http.StatusUnauthorized {
			t.Errorf("Key(%q, %q): status %d", c.authz, c.apiKey, httperr.Status(err))
		}
	}
}

func FuzzKey(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer\tabc", "Basic x", "", "Bearer " + strings.Repeat("a", 600)} {
		f.Add([]byte(s), []byte("abc"))
	}
	a, _, _ := newTestAuth(f, Settings{Enabled: true, KeysFile: testKeysFile(f)})
	f.Fuzz(func(t *testing.T, authz, apiKey []byte) {
		key, err := Key(authz, apiKey)
		if err != nil {
			if httperr.Status(err) != http.StatusUnauthorized {
				t.Fatalf("status %d", httperr.Status(err))
			}
			return
		}
		if len(key) == 0 || len(key) > MaxKeyLen {
			t.Fatalf("key of %d bytes taken", len(key))
		}
		if err := a.Check(Request{Authorization: authz, APIKey: apiKey, Model: []byte("m")}); err != nil && httperr.Status(err) >= 500 {
			t.Fatalf("a %d: %v", httperr.Status(err), err)
		}
	})
}

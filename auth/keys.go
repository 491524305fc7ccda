package auth

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// The keys file (auth.keys_file) is YAML, read strictly (an unknown key is
// an error). It names each tenant, the SHA-256 of each of its keys (64 hex
// digits, either case: never a key in clear), the models it may use, its
// rate and whether it may read /metrics:
//
//	tenants:
//	  team-a:
//	    keys:                  # sha256 of each key, hex (inferd -new-key team-a)
//	      - 6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b
//	    models: [resnet50, "tiny*"]  # "*": every model; NAME; PREFIX*. Default none
//	    rate: 20               # requests/s over all its keys; 0 (default): no limit
//	    burst: 40              # requests at once above the rate; default rate rounded up, >= 1
//	    metrics: false         # its keys may read /metrics when auth.metrics_key is set
//
// A tenant's name is what inferd_tenant_requests_total counts it as: 1 to
// 64 of A-Z a-z 0-9 . _ -, and not "other" (everything unknown counts as
// that). A hash belongs to one tenant.
type keysFile struct {
	Tenants map[string]tenantEntry `yaml:"tenants"`
}

type tenantEntry struct {
	Keys    []string `yaml:"keys"`
	Models  []string `yaml:"models"`
	Rate    float64  `yaml:"rate"`
	Burst   int      `yaml:"burst"`
	Metrics bool     `yaml:"metrics"`
}

// Limits on the keys file's values; beyond them a value is refused as a
// likely typo.
const (
	maxRate  = 1e6
	minRate  = 1e-3
	maxBurst = 1 << 20
)

// Other is the tenant label of requests with no known tenant.
const Other = "other"

// Keys is a keys file, parsed: which tenant each key hash belongs to.
type Keys struct {
	byHash  map[[sha256.Size]byte]*TenantConfig
	tenants []*TenantConfig // by name
}

// TenantConfig is one tenant of a keys file.
type TenantConfig struct {
	// Name is the tenant's name, its label in inferd_tenant_requests_total.
	Name string
	// Models are the patterns of the models it may use: "*" every one, a
	// name, or a prefix followed by "*". None: no model.
	Models []string
	// Rate is its requests per second over all its keys, 0 for no limit.
	Rate float64
	// Burst is how many requests it may send at once above Rate.
	Burst int
	// Metrics lets its keys read /metrics when auth.metrics_key is set.
	Metrics bool
	// Keys is how many keys it has.
	Keys int
}

// Allows reports whether the tenant may use model.
func (t *TenantConfig) Allows(model []byte) bool {
	for _, p := range t.Models {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if bytes.HasPrefix(model, []byte(prefix)) {
				return true
			}
		} else if string(model) == p {
			return true
		}
	}
	return false
}

// Tenants returns the tenants of the file, by name.
func (k *Keys) Tenants() []*TenantConfig { return k.tenants }

// ReadKeys reads and checks the keys file at path. Its error says every
// problem, one line each (errors.Join), naming the entry as the file
// writes it: tenants.team-a.rate -1: must be >= 0.
func ReadKeys(path string) (*Keys, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the caller names the file
		}
		return nil, err
	}
	return ParseKeys(data)
}

// ParseKeys parses and checks a keys file's contents, as ReadKeys.
func ParseKeys(data []byte) (*Keys, error) {
	var f keysFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			errs := make([]error, len(te.Errors))
			for i, e := range te.Errors {
				errs[i] = errors.New(e)
			}
			return nil, errors.Join(errs...)
		}
		return nil, errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
	}
	k := &Keys{byHash: map[[sha256.Size]byte]*TenantConfig{}}
	owner := map[[sha256.Size]byte]string{}
	var errs []error
	names := make([]string, 0, len(f.Tenants))
	for name := range f.Tenants {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		e := f.Tenants[name]
		key := "tenants." + name
		if err := checkTenantName(name); err != nil {
			errs = append(errs, fmt.Errorf("tenants %q: %w", name, err))
		}
		t := &TenantConfig{Name: name, Models: e.Models, Rate: e.Rate, Burst: e.Burst, Metrics: e.Metrics, Keys: len(e.Keys)}
		for i, p := range e.Models {
			if err := checkPattern(p); err != nil {
				errs = append(errs, fmt.Errorf("%s.models[%d] %q: %w", key, i, p, err))
			}
		}
		switch {
		case e.Rate < 0 || math.IsNaN(e.Rate):
			errs = append(errs, fmt.Errorf("%s.rate %v: must be >= 0 (0: no limit)", key, e.Rate))
		case e.Rate > maxRate || e.Rate > 0 && e.Rate < minRate:
			errs = append(errs, fmt.Errorf("%s.rate %v: want %v to %v requests/s, or 0 for no limit", key, e.Rate, minRate, maxRate))
		}
		switch {
		case e.Burst < 0 || e.Burst > maxBurst:
			errs = append(errs, fmt.Errorf("%s.burst %d: want 0 (the rate rounded up) to %d", key, e.Burst, maxBurst))
		case e.Burst == 0:
			t.Burst = max(1, int(math.Ceil(min(e.Rate, maxRate))))
		}
		for i, h := range e.Keys {
			var sum [sha256.Size]byte
			if n, err := hex.Decode(sum[:], []byte(h)); err != nil || n != sha256.Size || len(h) != 2*sha256.Size {
				// The value is not quoted back: it may be a key pasted in
				// clear by mistake.
				errs = append(errs, fmt.Errorf("%s.keys[%d]: want 64 hex digits, the SHA-256 of a key (inferd -new-key %s), not the key", key, i, name))
				continue
			}
			if o, dup := owner[sum]; dup {
				errs = append(errs, fmt.Errorf("%s.keys[%d]: the same hash is a key of tenant %q already", key, i, o))
				continue
			}
			owner[sum] = name
			k.byHash[sum] = t
		}
		k.tenants = append(k.tenants, t)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return k, nil
}

// checkTenantName checks a tenant's name as a label value that needs no
// escaping and cannot be mistaken for the catch-all.
func checkTenantName(name string) error {
	if name == "" || len(name) > 64 {
		return errors.New("want 1 to 64 characters")
	}
	if name == Other {
		return errors.New(`"other" counts the requests of no known tenant: choose another name`)
	}
	for _, c := range []byte(name) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return errors.New("want only A-Z a-z 0-9 . _ -")
		}
	}
	return nil
}

// checkPattern checks a model pattern: "*", a model name, or a prefix of
// one followed by "*".
func checkPattern(p string) error {
	body := strings.TrimSuffix(p, "*")
	switch {
	case p == "":
		return errors.New(`want "*", a model name or PREFIX*`)
	case strings.Contains(body, "*"):
		return errors.New(`"*" may only end a pattern: "*", NAME or PREFIX*`)
	case strings.ContainsAny(body, "/?# "):
		return errors.New("a model name has no '/', '?', '#' or spaces")
	}
	return nil
}

// MaxKeyLen is the longest API key taken; a longer one is malformed.
const MaxKeyLen = 512

// NewKey returns a new random API key and the SHA-256 of it in hex, the
// line a keys file holds. The key is 256 random bits, base64url, after the
// prefix "inferd_" (which secret scanners can look for).
func NewKey() (key, hash string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", err
	}
	key = "inferd_" + base64.RawURLEncoding.EncodeToString(b[:])
	return key, HashKey(key), nil
}

// HashKey returns the SHA-256 of key in lowercase hex, as a keys file
// holds it (and as `printf %s KEY | sha256sum` prints it).
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// WriteNewKey makes a key for tenant (NewKey) and writes it to w, once,
// with the entry that gives it to the tenant in a keys file: what
// `inferd -new-key TENANT` prints.
func WriteNewKey(w io.Writer, tenant string) error {
	if err := checkTenantName(tenant); err != nil {
		return fmt.Errorf("tenant %q: %w", tenant, err)
	}
	key, hash, err := NewKey()
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "API key for tenant %s (shown this once; only its hash is kept):\n\n  %s\n\n"+
		"Add its SHA-256 to the keys file (auth.keys_file), then send inferd SIGHUP:\n\n"+
		"tenants:\n  %s:\n    keys:\n      - %s\n", tenant, key, tenant, hash)
	return err
}

package main

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The gateway's map files in its directory (configs/haproxy.cfg reads them
// from $HAPROXY_GATEWAY_DIR), in the order they are synchronised: a tenant's
// models and limits are in place before its first key works.
const (
	modelsMap      = "models.map"
	ratesMap       = "rates.map"
	concurrencyMap = "concurrency.map"
	keysMap        = "keys.map"
)

var mapFiles = []string{modelsMap, ratesMap, concurrencyMap, keysMap}

// headers are the comments each file starts with, saying what HAProxy does
// with it.
var headers = map[string]string{
	keysMap: `# API keys of the inferd gateway: sha256(KEY) in lowercase hex -> tenant.
# Keys themselves are stored nowhere. Edit with inferd-keys, which also
# updates the running HAProxy; a "# added" line dates the key below it.
`,
	modelsMap: `# Models each tenant may use: prefixes of "TENANT/MODEL/" -> the rule.
# "t/m/" allows model m, "t/res" every model whose name starts with res,
# "t/" every model. Edit with inferd-keys (-models 'm,res*' or '*').
`,
	ratesMap: `# Requests per second each tenant may send through the gateway, for the
# whole cluster (0: no limit). Edit with inferd-keys (-rate N).
`,
	concurrencyMap: `# Requests each tenant may have in flight at once (0: no limit). Edit
# with inferd-keys (-concurrency N).
`,
}

// KeyPrefix starts every key inferd-keys makes, so that a key found in a
// log or a repository is recognisable.
const KeyPrefix = "ik_"

// tenantName: the stick table holds names of up to 64 bytes; the name goes
// into HTTP headers, map files and the Runtime API unquoted.
var tenantName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// modelRule: a model name, a prefix ending in *, or * alone. The name must
// be reachable through the gateway, which refuses percent-encoded paths,
// and travels unquoted through the Runtime API.
var modelRule = regexp.MustCompile(`^(\*|[A-Za-z0-9._~:@!$&'()+,=-]+\*?)$`)

// Key is one API key, by its hash.
type Key struct {
	Hash   string // sha256 of the key, lowercase hex
	Tenant string
	Added  string // RFC 3339, from the "# added" comment; may be empty
}

// ID is how lists and revoke name a key: the first 12 hex digits of its hash.
func (k Key) ID() string { return k.Hash[:12] }

// Tenant is what the gateway knows of a tenant besides its keys.
type Tenant struct {
	Models      []string // rules: "m", "res*" or "*"
	Rate        int      // requests/s, 0: no limit
	Concurrency int      // requests in flight, 0: no limit
}

// Store is the gateway's directory: its map files, read whole and written
// whole (to a temporary file renamed over the old one), under an exclusive
// lock on DIR/.lock held from Open to Close.
type Store struct {
	Dir     string
	Keys    []Key
	Tenants map[string]*Tenant
	lock    *os.File
}

// Open locks dir and reads its maps; a missing map file is an empty one.
func Open(dir string) (*Store, error) {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("gateway directory %s: not a directory (make cluster creates one; set -dir or $INFERD_GATEWAY_DIR)", dir)
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		lock.Close()
		return nil, fmt.Errorf("locking %s: %w", lock.Name(), err)
	}
	s := &Store{Dir: dir, Tenants: map[string]*Tenant{}, lock: lock}
	if err := s.read(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close releases the lock.
func (s *Store) Close() error { return s.lock.Close() }

// entry is one line of a map file.
type entry struct{ key, value, comment string }

func readMap(path string) ([]entry, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var (
		out     []entry
		comment string
		n       int
	)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if c, ok := strings.CutPrefix(line, "#"); ok {
			if a, ok := strings.CutPrefix(strings.TrimSpace(c), "added "); ok {
				comment = strings.TrimSpace(a)
			}
			continue
		}
		k, v := line, ""
		if i := strings.IndexAny(line, " \t"); i >= 0 {
			k, v = line[:i], strings.TrimSpace(line[i+1:])
		}
		if v == "" {
			return nil, fmt.Errorf("%s:%d: %q has no value", path, n, k)
		}
		out = append(out, entry{key: k, value: v, comment: comment})
		comment = ""
	}
	return out, sc.Err()
}

func (s *Store) read() error {
	all := map[string][]entry{}
	for _, name := range mapFiles {
		es, err := readMap(filepath.Join(s.Dir, name))
		if err != nil {
			return err
		}
		all[name] = es
	}
	tenant := func(name string) *Tenant {
		t := s.Tenants[name]
		if t == nil {
			t = &Tenant{}
			s.Tenants[name] = t
		}
		return t
	}
	for _, e := range all[modelsMap] {
		name, _, ok := strings.Cut(e.key, "/")
		if !ok {
			return fmt.Errorf("%s: %q is not TENANT/MODEL", modelsMap, e.key)
		}
		tenant(name).Models = append(tenant(name).Models, e.value)
	}
	for _, f := range []struct {
		file string
		set  func(*Tenant, int)
	}{
		{ratesMap, func(t *Tenant, n int) { t.Rate = n }},
		{concurrencyMap, func(t *Tenant, n int) { t.Concurrency = n }},
	} {
		for _, e := range all[f.file] {
			n, err := strconv.Atoi(e.value)
			if err != nil || n < 0 {
				return fmt.Errorf("%s: %s: %q is not a count", f.file, e.key, e.value)
			}
			f.set(tenant(e.key), n)
		}
	}
	for _, e := range all[keysMap] {
		if len(e.key) != 64 {
			return fmt.Errorf("%s: %q is not a SHA-256 in hex", keysMap, e.key)
		}
		s.Keys = append(s.Keys, Key{Hash: e.key, Tenant: e.value, Added: e.comment})
	}
	return nil
}

// entries is what file name should hold, in the order it is written.
func (s *Store) entries(name string) []entry {
	var out []entry
	tenants := slices.Sorted(func(yield func(string) bool) {
		for n := range s.Tenants {
			if !yield(n) {
				return
			}
		}
	})
	for _, n := range tenants {
		t := s.Tenants[n]
		switch name {
		case modelsMap:
			for _, r := range t.Models {
				out = append(out, entry{key: fenceKey(n, r), value: r})
			}
		case ratesMap:
			out = append(out, entry{key: n, value: strconv.Itoa(t.Rate)})
		case concurrencyMap:
			if t.Concurrency > 0 {
				out = append(out, entry{key: n, value: strconv.Itoa(t.Concurrency)})
			}
		}
	}
	if name == keysMap {
		for _, k := range s.Keys {
			out = append(out, entry{key: k.Hash, value: k.Tenant, comment: k.Added})
		}
	}
	return out
}

// fenceKey is the models.map key of a rule: the prefix of "TENANT/MODEL/"
// that the gateway matches.
func fenceKey(tenant, rule string) string {
	switch {
	case rule == "*":
		return tenant + "/"
	case strings.HasSuffix(rule, "*"):
		return tenant + "/" + strings.TrimSuffix(rule, "*")
	default:
		return tenant + "/" + rule + "/"
	}
}

// Save writes every map file whose content changed.
func (s *Store) Save() error {
	for _, name := range mapFiles {
		var b strings.Builder
		b.WriteString(headers[name])
		for _, e := range s.entries(name) {
			if e.comment != "" {
				fmt.Fprintf(&b, "# added %s\n", e.comment)
			}
			fmt.Fprintf(&b, "%s %s\n", e.key, e.value)
		}
		path := filepath.Join(s.Dir, name)
		if old, err := os.ReadFile(path); err == nil && string(old) == b.String() {
			continue
		}
		if err := writeAtomic(path, []byte(b.String())); err != nil {
			return err
		}
	}
	return nil
}

// writeAtomic replaces path with data: a reader (HAProxy starting) sees
// the old file or the new one, never half of one.
func writeAtomic(path string, data []byte) error {
	mode := os.FileMode(0o640)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	// The rename itself survives a crash once the directory is synced.
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ParseModels reads a -models list: comma-separated rules.
func ParseModels(list string) ([]string, error) {
	var rules []string
	for _, r := range strings.Split(list, ",") {
		r = strings.TrimSpace(r)
		if r == "" {
			continue
		}
		if !modelRule.MatchString(r) {
			return nil, fmt.Errorf("-models: %q: want a model name, a prefix ending in * or * alone (letters, digits and ._~:@!$&'()+=- only)", r)
		}
		if r == "*" {
			return []string{"*"}, nil
		}
		if !slices.Contains(rules, r) {
			rules = append(rules, r)
		}
	}
	if len(rules) == 0 {
		return nil, errors.New("-models: empty: name the models, or * for all")
	}
	return rules, nil
}

// SetTenant creates or changes a tenant. For a new tenant models are
// required; nil models, or a negative rate or concurrency, keep what an
// existing tenant has.
func (s *Store) SetTenant(name string, models []string, rate, concurrency int) (*Tenant, error) {
	if !tenantName.MatchString(name) {
		return nil, fmt.Errorf("tenant %q: want 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	t := s.Tenants[name]
	if t == nil {
		if models == nil {
			return nil, fmt.Errorf("tenant %q is new: say which models it may use (-models 'm1,prefix*' or '*')", name)
		}
		if rate < 0 {
			return nil, fmt.Errorf("tenant %q is new: give its rate (-rate N requests/s, 0 for no limit)", name)
		}
		t = &Tenant{}
		s.Tenants[name] = t
	}
	if models != nil {
		t.Models = models
	}
	if rate >= 0 {
		t.Rate = rate
	}
	if concurrency >= 0 {
		t.Concurrency = concurrency
	}
	return t, nil
}

// NewKey makes a key for tenant (which must exist) and records its hash;
// the key itself is returned once and kept nowhere.
func (s *Store) NewKey(tenant string, now time.Time) (string, Key, error) {
	if s.Tenants[tenant] == nil {
		return "", Key{}, fmt.Errorf("no tenant %q", tenant)
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", Key{}, err
	}
	key := KeyPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	k := Key{Hash: Hash(key), Tenant: tenant, Added: now.UTC().Format(time.RFC3339)}
	s.Keys = append(s.Keys, k)
	return key, k, nil
}

// Hash is what keys.map holds for key: its SHA-256 in lowercase hex, as
// HAProxy's sha2(256),hex,lower computes it.
func Hash(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

// Revoke removes keys: what is given may be a key itself, its full hash or
// an ID (a prefix of its hash of at least 8 hex digits) naming exactly one.
func (s *Store) Revoke(what string) ([]Key, error) {
	h := Hash(what)
	match := func(k Key) bool { return k.Hash == h }
	if isHex(what) && len(what) >= 8 && len(what) <= 64 {
		w := strings.ToLower(what)
		n := 0
		for _, k := range s.Keys {
			if strings.HasPrefix(k.Hash, w) {
				n++
			}
		}
		if n > 1 {
			return nil, fmt.Errorf("%q names %d keys: give more of the hash", what, n)
		}
		if n == 1 {
			match = func(k Key) bool { return strings.HasPrefix(k.Hash, w) }
		}
	}
	return s.remove(match, fmt.Sprintf("no key matches %q (give the key, or its id from inferd-keys list)", what))
}

// RevokeTenant removes every key of tenant; with drop, the tenant's models
// and limits go too.
func (s *Store) RevokeTenant(tenant string, drop bool) ([]Key, error) {
	if s.Tenants[tenant] == nil {
		return nil, fmt.Errorf("no tenant %q", tenant)
	}
	gone, err := s.remove(func(k Key) bool { return k.Tenant == tenant }, "")
	if drop {
		delete(s.Tenants, tenant)
	}
	return gone, err
}

func (s *Store) remove(match func(Key) bool, none string) ([]Key, error) {
	var gone []Key
	s.Keys = slices.DeleteFunc(s.Keys, func(k Key) bool {
		if match(k) {
			gone = append(gone, k)
			return true
		}
		return false
	})
	if len(gone) == 0 && none != "" {
		return nil, errors.New(none)
	}
	return gone, nil
}

func isHex(s string) bool {
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return s != ""
}

package auth

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseKeys(t *testing.T) {
	ha, hb := HashKey("key-a"), strings.ToUpper(HashKey("key-b")) // either case
	k, err := ParseKeys([]byte(`
tenants:
  team-a:
    keys: [` + ha + `]
    models: ["*"]
    rate: 2.5
  team.b_2:
    keys: [` + hb + `]
    models: [resnet50, "tiny*"]
    burst: 7
    metrics: true
  scraper: {}
`))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tc := range k.Tenants() {
		names = append(names, tc.Name)
	}
	if got := strings.Join(names, " "); got != "scraper team-a team.b_2" {
		t.Errorf("tenants %q", got)
	}
	a := k.byHash[sha256.Sum256([]byte("key-a"))]
	b := k.byHash[sha256.Sum256([]byte("key-b"))]
	if a == nil || b == nil || a.Name != "team-a" || b.Name != "team.b_2" {
		t.Fatalf("hash lookup: %+v %+v", a, b)
	}
	// The default burst is the rate rounded up, at least 1.
	if a.Burst != 3 || b.Burst != 7 || k.Tenants()[0].Burst != 1 || !b.Metrics || a.Metrics {
		t.Errorf("bursts %d %d %d, metrics %v %v", a.Burst, b.Burst, k.Tenants()[0].Burst, a.Metrics, b.Metrics)
	}
	for _, c := range []struct {
		t     *TenantConfig
		model string
		want  bool
	}{
		{a, "anything", true},
		{b, "resnet50", true},
		{b, "resnet50-fp16", false}, // an exact name is not a prefix
		{b, "tiny", true},
		{b, "tiny-uint8", true},
		{b, "tin", false},
		{k.Tenants()[0], "resnet50", false}, // no models: none
	} {
		if got := c.t.Allows([]byte(c.model)); got != c.want {
			t.Errorf("%s allows %q: %v, want %v", c.t.Name, c.model, got, c.want)
		}
	}
}

// Each mistake is said on a line of its own, naming the entry; a hash
// that is not one is not quoted back (it may be a key in clear).
func TestParseKeysErrors(t *testing.T) {
	h := HashKey("k")
	for _, c := range []struct{ name, file, want string }{
		{"unknown key", "tenants:\n  a: {keys: [], modles: []}\n", "line 2: field modles not found in type auth.tenantEntry"},
		{"not YAML", "tenants: [", "line 1: did not find expected node content"},
		{"a key in clear", "tenants:\n  a: {keys: [my-secret-key]}\n", "tenants.a.keys[0]: want 64 hex digits, the SHA-256 of a key (inferd -new-key a), not the key"},
		{"a short hash", "tenants:\n  a: {keys: [" + h[:62] + "]}\n", "tenants.a.keys[0]: want 64 hex digits, the SHA-256 of a key (inferd -new-key a), not the key"},
		{"one hash, two tenants", "tenants:\n  a: {keys: [" + h + "]}\n  b: {keys: [" + h + "]}\n", `tenants.b.keys[0]: the same hash is a key of tenant "a" already`},
		{"other is taken", "tenants:\n  other: {}\n", `tenants "other": "other" counts the requests of no known tenant: choose another name`},
		{"a label-breaking name", "tenants:\n  'a\"b': {}\n", `tenants "a\"b": want only A-Z a-z 0-9 . _ -`},
		{"star inside", "tenants:\n  a: {models: ['res*50']}\n", `tenants.a.models[0] "res*50": "*" may only end a pattern: "*", NAME or PREFIX*`},
		{"empty pattern", "tenants:\n  a: {models: ['']}\n", `tenants.a.models[0] "": want "*", a model name or PREFIX*`},
		{"negative rate", "tenants:\n  a: {rate: -1}\n", "tenants.a.rate -1: must be >= 0 (0: no limit)"},
		{"huge rate", "tenants:\n  a: {rate: 1e9}\n", "tenants.a.rate 1e+09: want 0.001 to 1e+06 requests/s, or 0 for no limit"},
		{"negative burst", "tenants:\n  a: {burst: -2}\n", "tenants.a.burst -2: want 0 (the rate rounded up) to 1048576"},
		{"every mistake", "tenants:\n  a: {rate: -1, burst: -1, models: ['a b']}\n",
			"tenants.a.models[0] \"a b\": a model name has no '/', '?', '#' or spaces\ntenants.a.rate -1: must be >= 0 (0: no limit)\ntenants.a.burst -1: want 0 (the rate rounded up) to 1048576"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseKeys([]byte(c.file))
			if err == nil || err.Error() != c.want {
				t.Errorf("error\n%v\nwant\n%s", err, c.want)
			}
			if strings.Contains(c.name, "clear") && strings.Contains(err.Error(), "my-secret-key") {
				t.Error("the error quotes the key")
			}
		})
	}
	if k, err := ParseKeys(nil); err != nil || len(k.Tenants()) != 0 {
		t.Errorf("an empty file: %v, %v", k, err)
	}
}

// A new key is 256 random bits, its hash what sha256sum prints, and the
// entry -new-key prints is a keys file that gives it to the tenant.
func TestNewKey(t *testing.T) {
	key, hash, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(key))
	if hash != hex.EncodeToString(sum[:]) || !strings.HasPrefix(key, "inferd_") || len(key) != len("inferd_")+43 {
		t.Errorf("key %q hash %q", key, hash)
	}
	if k2, _, _ := NewKey(); k2 == key {
		t.Error("two keys alike")
	}
	var out bytes.Buffer
	if err := WriteNewKey(&out, "team-a"); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out.String(), "\n")
	printed := strings.TrimSpace(lines[2])
	entry := out.String()[strings.Index(out.String(), "tenants:"):]
	k, err := ParseKeys([]byte(entry))
	if err != nil {
		t.Fatalf("the printed entry does not parse: %v\n%s", err, out.String())
	}
	if tc := k.byHash[sha256.Sum256([]byte(printed))]; tc == nil || tc.Name != "team-a" {
		t.Errorf("the printed key %q is not the printed entry's:\n%s", printed, out.String())
	}
	if err := WriteNewKey(&out, "other"); err == nil {
		t.Error("a key for the tenant other")
	}
}

func TestReadKeysMissing(t *testing.T) {
	_, err := ReadKeys(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, os.ErrNotExist) || strings.Contains(err.Error(), "nope.yaml") {
		t.Errorf("error %v: want ENOENT, the path left to the caller", err)
	}
}

// The example keys file that ships parses as the server reads it.
func TestExampleKeysFile(t *testing.T) {
	k, err := ReadKeys("../configs/keys.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(k.Tenants()); n != 3 || len(k.byHash) != 3 {
		t.Errorf("%d tenants, %d keys", n, len(k.byHash))
	}
}

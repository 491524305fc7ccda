package tlscert

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"

	"github.com/inferd/inferd/internal/testbed"
)

func TestValidateAndCheck(t *testing.T) {
	dir := t.TempDir()
	certs := testbed.NewCerts(t, dir)
	other := testbed.NewCerts(t, t.TempDir())
	missing := filepath.Join(dir, "nope.pem")
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("not PEM"), 0o600)
	for _, c := range []struct {
		name string
		s    Settings
		want string
	}{
		{"off", Settings{}, ""},
		{"a pair", Settings{Cert: certs.CertFile, Key: certs.KeyFile}, ""},
		{"cert alone", Settings{Cert: certs.CertFile}, "key: required with cert"},
		{"key alone", Settings{Key: certs.KeyFile}, "cert: required with key"},
		{"no cert file", Settings{Cert: missing, Key: certs.KeyFile}, `cert "` + missing + `": no such file or directory`},
		{"no key file", Settings{Cert: certs.CertFile, Key: missing}, `key "` + missing + `": no such file or directory`},
		{"not PEM", Settings{Cert: garbage, Key: certs.KeyFile}, `cert "` + garbage + `", key "` + certs.KeyFile + `": tls: failed to find any PEM data in certificate input`},
		{"another certificate's key", Settings{Cert: certs.CertFile, Key: other.KeyFile}, `cert "` + certs.CertFile + `", key "` + other.KeyFile + `": tls: private key does not match public key`},
	} {
		err := c.s.Check()
		if got := ""; err != nil {
			got = err.Error()
			if got != c.want {
				t.Errorf("%s: %s\nwant %s", c.name, got, c.want)
			}
		} else if c.want != "" {
			t.Errorf("%s: no error, want %s", c.name, c.want)
		}
	}
}

// A reload hands the new certificate to the next handshake; one that does
// not load leaves the one there.
func TestStoreReload(t *testing.T) {
	certs := testbed.NewCerts(t, t.TempDir())
	s := Settings{Cert: certs.CertFile, Key: certs.KeyFile}
	st, err := Load(s)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.Config()
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion %x", cfg.MinVersion)
	}
	serial := func() int64 {
		c, err := cfg.GetCertificate(&tls.ClientHelloInfo{})
		if err != nil || c.Leaf == nil {
			t.Fatalf("GetCertificate: %v, %v", c, err)
		}
		return c.Leaf.SerialNumber.Int64()
	}
	if serial() != 2 {
		t.Fatalf("serial %d", serial())
	}
	certs.Renew(3)
	if err := st.Reload(s); err != nil || serial() != 3 {
		t.Errorf("after a reload: serial %d, %v", serial(), err)
	}
	os.WriteFile(certs.KeyFile, []byte("broken"), 0o600)
	if err := st.Reload(s); err == nil || serial() != 3 {
		t.Errorf("a broken key: %v, serial %d", err, serial())
	}
}

// Package tlscert serves HTTPS with a certificate that can be replaced
// while serving: the "tls:" section of inferd.yaml (Settings), checked as
// startup loads it, and a Store whose tls.Config hands each handshake the
// certificate loaded last, so a SIGHUP that re-reads renewed files changes
// no connection already open and drops none.
package tlscert

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"sync/atomic"
)

// Settings are the "tls:" section of inferd.yaml. This package owns them:
// their keys and validation. Both empty (the default) serve plain HTTP.
type Settings struct {
	// Cert is a PEM file: the server's certificate, then the intermediate
	// certificates that clients need to reach their root. With Key, the
	// replica serves HTTPS only (TLS 1.2 and 1.3, ALPN http/1.1). SIGHUP
	// re-reads both files. Trap: turning TLS on or off needs a restart.
	Cert string `yaml:"cert"`
	// Key is the PEM file of the certificate's private key.
	Key string `yaml:"key"`
}

// Enabled reports whether s serves HTTPS.
func (s Settings) Enabled() bool { return s.Cert != "" || s.Key != "" }

// Validate reports every value of s that Load would refuse without reading
// the files, one error per problem, each starting with the setting's key.
func (s Settings) Validate() error {
	switch {
	case s.Cert != "" && s.Key == "":
		return errors.New("key: required with cert")
	case s.Cert == "" && s.Key != "":
		return errors.New("cert: required with key")
	}
	return nil
}

// Check is Validate plus the files: they must hold a certificate and its
// private key, as Load reads them.
func (s Settings) Check() error {
	if err := s.Validate(); err != nil || !s.Enabled() {
		return err
	}
	_, err := load(s)
	return err
}

// load reads the key pair s names; the error starts with the key of the
// file at fault when it is known.
func load(s Settings) (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(s.Cert, s.Key)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			key := "cert"
			if pe.Path == s.Key {
				key = "key"
			}
			return nil, fmt.Errorf("%s %q: %w", key, pe.Path, pe.Err)
		}
		return nil, fmt.Errorf("cert %q, key %q: %w", s.Cert, s.Key, err)
	}
	return &c, nil
}

// Store holds the certificate handshakes get.
type Store struct {
	cert atomic.Pointer[tls.Certificate]
}

// Load reads the certificate and key s names into a new Store.
func Load(s Settings) (*Store, error) {
	st := &Store{}
	if err := st.Reload(s); err != nil {
		return nil, err
	}
	return st, nil
}

// Reload reads the certificate and key s names and hands them to every
// handshake from now on; on an error the store keeps the certificate it
// had.
func (st *Store) Reload(s Settings) error {
	if err := s.Validate(); err != nil {
		return err
	}
	c, err := load(s)
	if err != nil {
		return err
	}
	st.cert.Store(c)
	return nil
}

// Certificate returns the certificate handshakes get now.
func (st *Store) Certificate() *tls.Certificate { return st.cert.Load() }

// Config returns the server TLS configuration: TLS 1.2 and 1.3 only (an
// older client's handshake fails with a protocol version alert), the
// ECDHE AEAD cipher suites for TLS 1.2 (1.3's are all AEAD), ALPN
// http/1.1, and the store's certificate as it is at each handshake.
func (st *Store) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return st.cert.Load(), nil
		},
	}
}

package auth

import (
	"errors"
	"fmt"
	"strings"
)

// Settings are the "auth:" section of inferd.yaml. This package owns them:
// their keys, defaults and validation (Validate; Check adds the keys file).
// A SIGHUP reload re-reads the keys file and takes these settings anew.
type Settings struct {
	// Enabled requires an API key on every route but /v2/health/* and
	// /metrics: "Authorization: Bearer KEY" or "X-API-Key: KEY", whose
	// SHA-256 the keys file gives a tenant; the tenant's models and rate
	// apply. Default false. Trap: keys travel in clear unless tls is set
	// (or a TLS gateway is in front).
	Enabled bool `yaml:"enabled"`
	// KeysFile is the keys file (see Keys for its format): tenants, the
	// SHA-256 of their keys, their models, rates and /metrics access.
	// Required with enabled or metrics_key; without them its tenants' names
	// are still what requests are counted under.
	KeysFile string `yaml:"keys_file"`
	// MetricsKey requires a key on /metrics too, of a tenant with
	// "metrics: true" in the keys file; whether or not enabled is set.
	// Default false: /metrics is open (as /v2/health/* always are).
	MetricsKey bool `yaml:"metrics_key"`
	// Tenants are names counted as themselves in
	// inferd_tenant_requests_total beside the keys file's. With auth off, a
	// request's tenant is its X-Inferd-Tenant header, which the HAProxy
	// gateway sets (and always overwrites); a name that is neither here
	// nor in the keys file counts as "other", so clients cannot grow the
	// series. Default none.
	Tenants []string `yaml:"tenants"`
}

// Validate reports every value of s that Load would refuse without reading
// the keys file, one error per problem (errors.Join), each starting with
// the setting's key: keys_file: required when enabled is true.
func (s Settings) Validate() error {
	var errs []error
	if s.KeysFile == "" {
		switch {
		case s.Enabled:
			errs = append(errs, errors.New("keys_file: required when enabled is true"))
		case s.MetricsKey:
			errs = append(errs, errors.New("keys_file: required when metrics_key is true"))
		}
	}
	seen := map[string]bool{}
	for i, name := range s.Tenants {
		if err := checkTenantName(name); err != nil {
			errs = append(errs, fmt.Errorf("tenants[%d] %q: %w", i, name, err))
		} else if seen[name] {
			errs = append(errs, fmt.Errorf("tenants[%d] %q: listed twice", i, name))
		}
		seen[name] = true
	}
	return errors.Join(errs...)
}

// Check is Validate plus the keys file: it must be there, readable and
// valid. Each problem of the file is a line of its own, after the key and
// the path: keys_file "keys.yaml": tenants.a.rate -1: must be >= 0.
func (s Settings) Check() error {
	errs := unjoin(s.Validate())
	if s.KeysFile != "" {
		if _, err := ReadKeys(s.KeysFile); err != nil {
			for line := range strings.SplitSeq(err.Error(), "\n") {
				errs = append(errs, fmt.Errorf("keys_file %q: %s", s.KeysFile, line))
			}
		}
	}
	return errors.Join(errs...)
}

// unjoin splits an errors.Join into its errors, so that a caller that
// prefixes each with its place in a file finds one problem in each.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err != nil {
		return []error{err}
	}
	return nil
}

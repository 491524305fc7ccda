package register

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Settings are the "register:" section of inferd.yaml. This package owns
// them: their keys, defaults (WithDefaults) and validation (Validate). The
// replica serves whether or not Consul is reachable; it retries with
// backoff. CONSUL_HTTP_TOKEN (and CONSUL_HTTP_ADDR when consul_addr is
// empty) are read from the environment as by the consul CLI.
type Settings struct {
	// Enabled turns registration on; the -consul flag also does. Default false.
	Enabled bool `yaml:"enabled"`
	// ConsulAddr is the agent's HTTP address (host:port or a URL). Default
	// $CONSUL_HTTP_ADDR, else 127.0.0.1:8500.
	ConsulAddr string `yaml:"consul_addr"`
	// Service is the Consul service name. Default "inferd".
	Service string `yaml:"service"`
	// ID is the service instance ID. Default "SERVICE-HOSTNAME-PORT", unique
	// per host and port.
	ID string `yaml:"id"`
	// Address is the address other hosts reach the replica at, and the one
	// the health check uses. Default: the listen host when it is not a
	// wildcard (the agent's node address otherwise; the check then uses
	// 127.0.0.1, the agent being local).
	Address string `yaml:"address"`
	// Tags are the service tags. Default none.
	Tags []string `yaml:"tags"`
	// CheckInterval is how often the agent GETs /v2/health/ready. Default 1s.
	CheckInterval time.Duration `yaml:"check_interval"`
	// CheckTimeout bounds one check. Default 1s.
	CheckTimeout time.Duration `yaml:"check_timeout"`
	// DeregisterAfter is how long the check may stay critical before the
	// agent drops the service: the safety net for a crashed replica.
	// Default 1m (Consul's minimum).
	DeregisterAfter time.Duration `yaml:"deregister_after"`
	// SyncInterval is how often the replica checks that the agent still has
	// it (an agent restart loses it) and registers again; also the longest
	// retry delay while the agent is unreachable. Default 5s.
	SyncInterval time.Duration `yaml:"sync_interval"`
}

// WithDefaults returns s with every default filled in that does not need
// the listening port (ID, Address).
func (s Settings) WithDefaults() Settings {
	if s.Service == "" {
		s.Service = "inferd"
	}
	s.CheckInterval = orDur(s.CheckInterval, time.Second)
	s.CheckTimeout = orDur(s.CheckTimeout, time.Second)
	s.DeregisterAfter = orDur(s.DeregisterAfter, time.Minute)
	s.SyncInterval = orDur(s.SyncInterval, 5*time.Second)
	return s
}

// Validate reports every value of s (with its defaults) that registration
// would refuse or Consul reject, one error per problem (errors.Join), each
// starting with the setting's key: service "a.b": want a DNS label.
func (s Settings) Validate() error {
	s = s.WithDefaults()
	var errs []error
	if strings.ContainsAny(s.Service, "./ ") {
		errs = append(errs, fmt.Errorf("service %q: want a DNS label (no '.', '/' or spaces)", s.Service))
	}
	if s.CheckInterval < 100*time.Millisecond || s.CheckTimeout <= 0 || s.SyncInterval < 100*time.Millisecond {
		errs = append(errs, errors.New("check_interval and sync_interval must be >= 100ms, check_timeout > 0"))
	}
	if s.DeregisterAfter < time.Minute {
		errs = append(errs, fmt.Errorf("deregister_after %s: Consul's minimum is 1m", s.DeregisterAfter))
	}
	return errors.Join(errs...)
}

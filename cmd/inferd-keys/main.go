// Command inferd-keys manages the API keys, tenants, model fences and rate
// limits of the inferd gateway in HAProxy (configs/haproxy.cfg). It edits
// the gateway's map files and, when HAProxy runs, its maps through the
// Runtime API: a change takes effect at once, with no reload, and survives
// a restart.
//
// Usage:
//
//	inferd-keys [-dir DIR] [-socket PATH] COMMAND [ARGS]
//
//	add TENANT [-models LIST] [-rate N] [-concurrency N]
//	    make a key for TENANT and print it, once (a new tenant needs
//	    -models and -rate)
//	revoke KEY|ID...         revoke keys, by the key or the ID list shows
//	revoke -tenant T [-drop] revoke every key of T (-drop: and T itself)
//	tenant TENANT [-models LIST] [-rate N] [-concurrency N]
//	    create or change a tenant
//	list                     tenants, their limits and key IDs, and what
//	                         the running HAProxy holds differently
//	sync                     make the running HAProxy's maps equal the files
//
// LIST is comma-separated: a model name, a prefix ending in * ("resnet*"),
// or * for every model. -rate is requests/s for the whole cluster, 0 for no
// limit; -concurrency is requests in flight, 0 for no limit.
//
// DIR defaults to $INFERD_GATEWAY_DIR, else .run/cluster/gateway (make
// cluster); PATH to $HAPROXY_SOCKET, else DIR/../haproxy.sock.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main, with its streams and exit status: 0 done, 1 failed, 2 usage.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("inferd-keys", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", envOr("INFERD_GATEWAY_DIR", filepath.Join(".run", "cluster", "gateway")), "the gateway's map directory (HAPROXY_GATEWAY_DIR)")
	socket := fs.String("socket", os.Getenv("HAPROXY_SOCKET"), "HAProxy's Runtime API socket (default DIR/../haproxy.sock)")
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: inferd-keys [-dir DIR] [-socket PATH] COMMAND [ARGS]
  add TENANT [-models LIST] [-rate N] [-concurrency N]   a new key, printed once
  revoke KEY|ID...  |  revoke -tenant T [-drop]
  tenant TENANT [-models LIST] [-rate N] [-concurrency N]
  list
  sync
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	if *socket == "" {
		*socket = filepath.Join(*dir, "..", "haproxy.sock")
	}
	c := &cli{dir: *dir, rt: Runtime{Socket: *socket}, out: stdout, log: stderr}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	var err error
	switch cmd {
	case "add":
		err = c.add(rest)
	case "revoke":
		err = c.revoke(rest)
	case "tenant":
		err = c.tenant(rest)
	case "list":
		err = c.list(rest)
	case "sync":
		err = c.sync(rest)
	default:
		fmt.Fprintf(stderr, "inferd-keys: unknown command %q\n", cmd)
		fs.Usage()
		return 2
	}
	var ue usageError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "inferd-keys %s: %v\n", cmd, err)
		return 2
	case err != nil:
		fmt.Fprintf(stderr, "inferd-keys %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

type usageError struct{ error }

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

type cli struct {
	dir      string
	rt       Runtime
	out, log io.Writer
}

// tenantFlags parses TENANT [-models LIST] [-rate N] [-concurrency N], the
// tenant before or after the flags.
func tenantFlags(cmd string, args []string) (name string, models []string, rate, conc int, err error) {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	list := fs.String("models", "", "models the tenant may use: m1,prefix*,... or *")
	r := fs.Int("rate", -1, "requests/s for the whole cluster (0: no limit)")
	cc := fs.Int("concurrency", -1, "requests in flight (0: no limit)")
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return "", nil, 0, 0, usageError{err}
	}
	if name == "" && fs.NArg() == 1 {
		name = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return "", nil, 0, 0, usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	if name == "" {
		return "", nil, 0, 0, usageError{errors.New("name the tenant")}
	}
	if *list != "" {
		if models, err = ParseModels(*list); err != nil {
			return "", nil, 0, 0, usageError{err}
		}
	}
	if *r < -1 || *cc < -1 {
		return "", nil, 0, 0, usageError{errors.New("-rate and -concurrency must be >= 0")}
	}
	return name, models, *r, *cc, nil
}

// change opens the store, lets f change it, saves it and brings the running
// HAProxy up to date.
func (c *cli) change(f func(s *Store) error) error {
	s, err := Open(c.dir)
	if err != nil {
		return err
	}
	defer s.Close()
	before := map[string][]entry{}
	for _, name := range mapFiles {
		before[name] = s.entries(name)
	}
	if err := f(s); err != nil {
		return err
	}
	if err := s.Save(); err != nil {
		return fmt.Errorf("saving %s: %w", c.dir, err)
	}
	// Only the maps that changed are compared with HAProxy's: a revoke
	// costs three Runtime API commands.
	var changed []string
	for _, name := range mapFiles {
		if !slices.EqualFunc(before[name], s.entries(name), func(a, b entry) bool { return a.key == b.key && a.value == b.value }) {
			changed = append(changed, name)
		}
	}
	if len(changed) == 0 {
		return nil
	}
	return c.apply(s, changed)
}

func (c *cli) apply(s *Store, names []string) error {
	start := time.Now()
	done, err := c.rt.Apply(s, names...)
	switch {
	case errors.Is(err, ErrNotRunning):
		fmt.Fprintf(c.log, "files in %s updated; HAProxy is not running (%s): it reads them when it starts\n", c.dir, c.rt.Socket)
		return nil
	case err != nil:
		return fmt.Errorf("files in %s updated, but the running HAProxy was not (%d changes made): %w; fix it and run inferd-keys sync", c.dir, len(done), err)
	}
	fmt.Fprintf(c.log, "files in %s and the running HAProxy updated (%d map changes in %s)\n", c.dir, len(done), time.Since(start).Round(time.Microsecond))
	return nil
}

func (c *cli) add(args []string) error {
	name, models, rate, conc, err := tenantFlags("add", args)
	if err != nil {
		return err
	}
	var key string
	var k Key
	err = c.change(func(s *Store) error {
		if _, err := s.SetTenant(name, models, rate, conc); err != nil {
			return err
		}
		key, k, err = s.NewKey(name, time.Now())
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(c.out, key)
	fmt.Fprintf(c.log, "key %s for tenant %s: shown this once, stored only as its SHA-256\n", k.ID(), name)
	return nil
}

func (c *cli) tenant(args []string) error {
	name, models, rate, conc, err := tenantFlags("tenant", args)
	if err != nil {
		return err
	}
	return c.change(func(s *Store) error {
		t, err := s.SetTenant(name, models, rate, conc)
		if err == nil {
			fmt.Fprintf(c.out, "tenant %s: %s\n", name, describe(t))
		}
		return err
	})
}

func (c *cli) revoke(args []string) error {
	fs := flag.NewFlagSet("revoke", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	tenant := fs.String("tenant", "", "revoke every key of this tenant")
	drop := fs.Bool("drop", false, "with -tenant: remove the tenant too")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if (*tenant == "") == (fs.NArg() == 0) {
		return usageError{errors.New("give keys or key IDs, or -tenant T")}
	}
	return c.change(func(s *Store) error {
		var gone []Key
		if *tenant != "" {
			g, err := s.RevokeTenant(*tenant, *drop)
			if err != nil {
				return err
			}
			gone = g
		}
		for _, what := range fs.Args() {
			g, err := s.Revoke(what)
			if err != nil {
				return err
			}
			gone = append(gone, g...)
		}
		for _, k := range gone {
			fmt.Fprintf(c.out, "revoked key %s of tenant %s\n", k.ID(), k.Tenant)
		}
		if *drop {
			fmt.Fprintf(c.out, "removed tenant %s\n", *tenant)
		}
		return nil
	})
}

func describe(t *Tenant) string {
	rate, conc := "no rate limit", "no concurrency limit"
	if t.Rate > 0 {
		rate = fmt.Sprintf("rate %d/s", t.Rate)
	}
	if t.Concurrency > 0 {
		conc = fmt.Sprintf("concurrency %d", t.Concurrency)
	}
	return fmt.Sprintf("models %s, %s, %s", strings.Join(t.Models, ","), rate, conc)
}

func (c *cli) list(args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q", args)}
	}
	s, err := Open(c.dir)
	if err != nil {
		return err
	}
	defer s.Close()
	keys := map[string][]Key{}
	for _, k := range s.Keys {
		keys[k.Tenant] = append(keys[k.Tenant], k)
	}
	names := make([]string, 0, len(s.Tenants))
	for n := range s.Tenants {
		names = append(names, n)
	}
	for n := range keys {
		if s.Tenants[n] == nil {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		if t := s.Tenants[n]; t != nil {
			fmt.Fprintf(c.out, "tenant %s: %s; %d keys\n", n, describe(t), len(keys[n]))
		} else {
			fmt.Fprintf(c.out, "tenant %s: NOT CONFIGURED (no models: every request is refused); %d keys\n", n, len(keys[n]))
		}
		for _, k := range keys[n] {
			added := k.Added
			if added == "" {
				added = "date unknown"
			}
			fmt.Fprintf(c.out, "  key %s  added %s\n", k.ID(), added)
		}
	}
	adds, dels, _, err := c.rt.Plan(s)
	switch {
	case errors.Is(err, ErrNotRunning):
		fmt.Fprintf(c.out, "haproxy: not running (%s)\n", c.rt.Socket)
	case err != nil:
		return err
	case len(adds)+len(dels) == 0:
		fmt.Fprintln(c.out, "haproxy: in sync with the files")
	default:
		fmt.Fprintf(c.out, "haproxy: %d differences from the files (inferd-keys sync makes it equal them):\n", len(adds)+len(dels))
		for _, ch := range append(adds, dels...) {
			fmt.Fprintf(c.out, "  %s\n", ch)
		}
	}
	return nil
}

func (c *cli) sync(args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q", args)}
	}
	s, err := Open(c.dir)
	if err != nil {
		return err
	}
	defer s.Close()
	done, err := c.rt.Apply(s)
	for _, ch := range done {
		fmt.Fprintf(c.out, "%s\n", ch)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(c.log, "haproxy: %d changes; in sync with %s\n", len(done), c.dir)
	return nil
}

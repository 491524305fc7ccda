package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// ErrNotRunning: nothing answers on the Runtime API socket. The map files
// are still right: HAProxy reads them when it starts.
var ErrNotRunning = errors.New("haproxy is not running")

// Runtime is HAProxy's Runtime API on its stats socket (configs/haproxy.cfg:
// $HAPROXY_RUN_DIR/haproxy.sock, level admin).
type Runtime struct {
	Socket  string
	Timeout time.Duration // per command; 0: 5s
}

// Do runs one command and returns HAProxy's answer.
func (r Runtime) Do(cmd string) (string, error) {
	d := r.Timeout
	if d == 0 {
		d = 5 * time.Second
	}
	c, err := net.DialTimeout("unix", r.Socket, d)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return "", fmt.Errorf("%w: %v", ErrNotRunning, err)
		}
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(d))
	if _, err := io.WriteString(c, cmd+"\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

// mapIDs finds the maps HAProxy loaded from dir/NAME for each name and
// returns their "#ID"s. HAProxy names a map by the path the configuration
// gave, which may be relative to its own working directory: a map is taken
// when its base name matches and it is the same file, or is the only one
// of that name.
func (r Runtime) mapIDs(dir string, names []string) (map[string]string, error) {
	out, err := r.Do("show map")
	if err != nil {
		return nil, err
	}
	type found struct {
		all  []string
		same string
	}
	byName := map[string]*found{}
	for _, n := range names {
		byName[n] = &found{}
	}
	for line := range strings.Lines(out) {
		if strings.HasPrefix(line, "#") {
			continue
		}
		id, rest, ok := strings.Cut(line, " (")
		if !ok {
			continue
		}
		file, _, ok := strings.Cut(rest, ")")
		f := byName[filepath.Base(file)]
		if !ok || f == nil {
			continue
		}
		f.all = append(f.all, "#"+id)
		want, err1 := os.Stat(filepath.Join(dir, filepath.Base(file)))
		if fi, err2 := os.Stat(file); err1 == nil && err2 == nil && os.SameFile(fi, want) {
			f.same = "#" + id
		}
	}
	ids := map[string]string{}
	for _, n := range names {
		f := byName[n]
		switch {
		case f.same != "":
			ids[n] = f.same
		case len(f.all) == 1:
			ids[n] = f.all[0]
		case len(f.all) == 0:
			return nil, fmt.Errorf("HAProxy on %s has no map %s: is it running configs/haproxy.cfg with the gateway on and HAPROXY_GATEWAY_DIR=%s?", r.Socket, n, dir)
		default:
			return nil, fmt.Errorf("HAProxy on %s has %d maps named %s, none of them %s", r.Socket, len(f.all), n, filepath.Join(dir, n))
		}
	}
	return ids, nil
}

// show returns a map's entries as HAProxy holds them: key -> values (a key
// added twice has two).
func (r Runtime) show(id string) (map[string][]string, error) {
	out, err := r.Do("show map " + id)
	if err != nil {
		return nil, err
	}
	m := map[string][]string{}
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) < 3 || !strings.HasPrefix(f[0], "0x") {
			if line = strings.TrimSpace(line); line != "" {
				return nil, fmt.Errorf("show map %s: %s", id, line)
			}
			continue
		}
		m[f[1]] = append(m[f[1]], strings.Join(f[2:], " "))
	}
	return m, nil
}

// Change is one difference between a map file and the running HAProxy.
type Change struct {
	Map, Op, Key, Value string // Op: add, set or del
}

func (c Change) String() string {
	if c.Op == "del" {
		return fmt.Sprintf("%s %s: del", c.Map, c.Key)
	}
	return fmt.Sprintf("%s %s: %s %s", c.Map, c.Key, c.Op, c.Value)
}

// diff is what makes the running map id equal want.
func diff(name string, cur map[string][]string, want []entry) (adds, dels []Change) {
	seen := map[string]bool{}
	for _, e := range want {
		seen[e.key] = true
		switch v := cur[e.key]; {
		case len(v) == 0:
			adds = append(adds, Change{name, "add", e.key, e.value})
		case len(v) > 1 || v[0] != e.value:
			adds = append(adds, Change{name, "set", e.key, e.value})
		}
	}
	for k := range cur {
		if !seen[k] {
			dels = append(dels, Change{Map: name, Op: "del", Key: k})
		}
	}
	slices.SortFunc(dels, func(a, b Change) int { return strings.Compare(a.Key, b.Key) })
	return adds, dels
}

// Plan compares the store's maps named (all when none are) with the
// running HAProxy: the additions and changes, then the removals, that would
// make them equal.
func (r Runtime) Plan(s *Store, names ...string) (adds, dels []Change, ids map[string]string, err error) {
	if len(names) == 0 {
		names = mapFiles
	}
	ids, err = r.mapIDs(s.Dir, names)
	if err != nil {
		return nil, nil, nil, err
	}
	for _, name := range mapFiles {
		if !slices.Contains(names, name) {
			continue
		}
		cur, err := r.show(ids[name])
		if err != nil {
			return nil, nil, nil, err
		}
		a, d := diff(name, cur, s.entries(name))
		adds = append(adds, a...)
		// Removals go keys first: a key never outlives its tenant's limits.
		dels = append(d, dels...)
	}
	return adds, dels, ids, nil
}

// Apply makes the running HAProxy's maps named (all when none are) equal
// the store, without a reload: additions and changes first (a tenant's
// models and limits before its keys), removals after (its keys before its
// limits). It returns what it changed.
func (r Runtime) Apply(s *Store, names ...string) ([]Change, error) {
	adds, dels, ids, err := r.Plan(s, names...)
	if err != nil {
		return nil, err
	}
	var done []Change
	for _, c := range append(adds, dels...) {
		cmd := fmt.Sprintf("%s map %s %s", c.Op, ids[c.Map], c.Key)
		if c.Op != "del" {
			cmd += " " + c.Value
		}
		out, err := r.Do(cmd)
		if err != nil {
			return done, fmt.Errorf("%s: %w", cmd, err)
		}
		if out = strings.TrimSpace(out); out != "" && !(c.Op == "del" && strings.Contains(out, "not found")) {
			return done, fmt.Errorf("%s: HAProxy says %q", cmd, out)
		}
		done = append(done, c)
	}
	return done, nil
}

package host

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"

	"github.com/inferd/inferd/config"
)

// Set is the served models. Lookups read it without a lock; Add and Reload
// replace it whole, so models can load behind a listening server and be
// swapped while requests run.
type Set struct {
	env  Env
	mu   sync.Mutex // serialises Add and Reload
	cur  atomic.Pointer[models]
	stop atomic.Bool // Close was called: no more reloads
}

// models is one version of the set.
type models struct {
	byName map[string]*Model
	order  []*Model // in the order added; the first is the default
}

// NewSet returns an empty set whose Reload opens models with env.
func NewSet(env Env) *Set {
	if env.Metrics == nil {
		env.Metrics = metrics.NewSet()
	}
	s := &Set{env: env}
	s.cur.Store(&models{byName: map[string]*Model{}})
	return s
}

// Add serves m after the models already served. It is safe to call while
// the set is in use.
func (s *Set) Add(m *Model) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.cur.Load()
	next := &models{byName: make(map[string]*Model, len(old.byName)+1), order: append(old.order[:len(old.order):len(old.order)], m)}
	for k, v := range old.byName {
		next.byName[k] = v
	}
	next.byName[m.Name] = m
	s.cur.Store(next)
}

// Get returns the model named name, or nil, without counting a use: for
// what outlives no reload (a listing, a test).
func (s *Set) Get(name string) *Model { return s.cur.Load().byName[name] }

// Models returns the served models in order (the config's).
func (s *Set) Models() []*Model { return s.cur.Load().order }

// Acquire returns the model named name, counted as in use until its
// Release, or nil. A model a reload has just replaced is not handed out:
// after counting itself the caller checks the model is still the served
// one, so Reload, which swaps the set first and then waits for the old
// model's users to leave, never closes a model under a request.
func (s *Set) Acquire(name string) *Model {
	for {
		m := s.Get(name)
		if m == nil {
			return nil
		}
		m.users.Add(1)
		if s.Get(name) == m {
			return m
		}
		m.Release() // replaced meanwhile: take the new one
	}
}

// ReloadResult says what a reload changed, by model name.
type ReloadResult struct {
	Added, Replaced, Removed, Kept []string
}

// Reload serves the models of cfgs from now on, without dropping a
// request: a model whose configuration is unchanged is kept as it is (its
// batcher, sessions and statistics); new and changed ones are opened and
// warmed up first; then the set is swapped at once, and the models left
// over finish their queued and running requests (their last user's
// Release wakes the reload) and are closed. When any model fails to open,
// nothing changes and the error says which. The order of cfgs is the new
// order (the first is /recognize's).
func (s *Set) Reload(ctx context.Context, cfgs []config.Model) (ReloadResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stop.Load() {
		return ReloadResult{}, errors.New("reload: the server is shutting down")
	}
	var res ReloadResult
	old := s.cur.Load()
	next := &models{byName: make(map[string]*Model, len(cfgs))}
	var opened []*Model
	for _, c := range cfgs {
		if m := old.byName[c.Name]; m != nil && reflect.DeepEqual(m.cfg, c) {
			next.byName[c.Name] = m
			next.order = append(next.order, m)
			res.Kept = append(res.Kept, c.Name)
			continue
		}
		m, err := Open(c, s.env)
		if err != nil {
			for _, o := range opened {
				o.Close(ctx)
			}
			return ReloadResult{}, fmt.Errorf("reload: %w (still serving the previous models)", err)
		}
		opened = append(opened, m)
		next.byName[c.Name] = m
		next.order = append(next.order, m)
		if old.byName[c.Name] != nil {
			res.Replaced = append(res.Replaced, c.Name)
		} else {
			res.Added = append(res.Added, c.Name)
		}
	}
	s.cur.Store(next)

	var errs []error
	for _, m := range old.order {
		if next.byName[m.Name] == m {
			continue
		}
		if next.byName[m.Name] == nil {
			res.Removed = append(res.Removed, m.Name)
		}
		m.retire(ctx)
		if err := m.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("closing the previous %q: %w", m.Name, err))
		}
		if !servesInfo(next, m.info) {
			s.env.Metrics.UnregisterMetric(m.info)
		}
	}
	return res, errors.Join(errs...)
}

// Close stops reloads and closes every model in order, each finishing
// what is queued, calling done after each with its name and error.
func (s *Set) Close(ctx context.Context, done func(name string, err error)) {
	s.mu.Lock()
	s.stop.Store(true)
	s.mu.Unlock()
	for _, m := range s.Models() {
		done(m.Name, m.Close(ctx))
	}
}

// servesInfo reports whether a model of set has the info series name.
func servesInfo(set *models, name string) bool {
	for _, m := range set.order {
		if m.info == name {
			return true
		}
	}
	return false
}

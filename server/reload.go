package server

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/inferd/inferd/config"
)

// acquire returns the model named name, counted as in use until the
// caller's m.users.Add(-1), or nil. A model a reload has just replaced is
// not handed out: after counting itself the caller checks the model is
// still the served one, so Reload, which swaps the set first and then waits
// for the old model's users to leave, never closes a model under a
// request.
func (s *Server) acquire(name string) *Model {
	for {
		m := s.model(name)
		if m == nil {
			return nil
		}
		m.users.Add(1)
		if s.model(name) == m {
			return m
		}
		m.users.Add(-1) // replaced meanwhile: take the new one
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
// over finish their queued and running requests and are closed. When any
// model fails to open, nothing changes and the error says which. The order
// of cfgs is the new order (the first is /recognize's).
func (s *Server) Reload(ctx context.Context, cfgs []config.Model) (ReloadResult, error) {
	s.addMu.Lock()
	defer s.addMu.Unlock()
	if s.draining.Load() {
		return ReloadResult{}, errors.New("reload: the server is shutting down")
	}
	var res ReloadResult
	old := s.models.Load()
	next := &modelSet{byName: make(map[string]*Model, len(cfgs))}
	var opened []*Model
	for _, c := range cfgs {
		if m := old.byName[c.Name]; m != nil && reflect.DeepEqual(m.cfg, c) {
			next.byName[c.Name] = m
			next.order = append(next.order, m)
			res.Kept = append(res.Kept, c.Name)
			continue
		}
		m, err := OpenModel(c, s.cfg.Runtime, s.cfg.Server, s.set, s.log)
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
	s.models.Store(next)

	var errs []error
	for _, m := range old.order {
		if next.byName[m.Name] == m {
			continue
		}
		if next.byName[m.Name] == nil {
			res.Removed = append(res.Removed, m.Name)
		}
		for m.users.Load() > 0 && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
		if err := m.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("closing the previous %q: %w", m.Name, err))
		}
		if !servesInfo(next, m.info) {
			s.set.UnregisterMetric(m.info)
		}
	}
	return res, errors.Join(errs...)
}

// servesInfo reports whether a model of set has the info series name.
func servesInfo(set *modelSet, name string) bool {
	for _, m := range set.order {
		if m.info == name {
			return true
		}
	}
	return false
}

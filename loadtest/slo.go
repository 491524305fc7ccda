package loadtest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// DefaultWindow is an SLO measurement window's default length.
const DefaultWindow = 5 * time.Second

// SLO is a latency and error target and the search for the highest
// open-loop rate that meets it.
//
// The search: measure at StartRate; while the rate passes, double it
// (exponential growth, at most MaxRate), or, when StartRate fails, halve
// it until one passes (down to MinRate); then bisect between the highest
// passing and the lowest failing rate until they are within Precision of
// each other. A rate passes when its measurement has p99 <= P99, an error
// rate <= MaxErrorRate, and a throughput of at least 90% of the rate (a
// server falling behind fails even before its latency shows it).
//
// A measurement is a series of windows of Window each at the rate, run
// until two consecutive windows agree: p99 and throughput each within
// Stability (relative) of the previous window's. At most MaxWindows are
// run; the last window is the measurement either way (Trial.Stable says
// which). A window far from the line settles the rate at once: a fail when
// its p99 is over twice the target or its error rate over twice the
// threshold plus 1%; a pass when it passes with p99 under half the target
// and no errors.
type SLO struct {
	// P99 is the latency target.
	P99 time.Duration
	// MaxErrorRate is the highest acceptable fraction of failed requests;
	// default 0.01.
	MaxErrorRate float64
	// StartRate is the first rate tried; default 10/s.
	StartRate float64
	// MaxRate caps the search; default 100000/s.
	MaxRate float64
	// MinRate is the lowest rate tried when StartRate fails; default
	// StartRate/64. Rate 0 in the result means even MinRate failed.
	MinRate float64
	// Window is one measurement window; default 5s.
	Window time.Duration
	// MaxWindows bounds the windows per rate; default 4.
	MaxWindows int
	// Stability is the relative difference two consecutive windows'
	// p99 and throughput must stay under; default 0.10.
	Stability float64
	// Precision ends the bisection when hi-lo < Precision*lo; default 0.05.
	Precision float64
}

// Trial is one rate the search measured.
type Trial struct {
	Rate    float64 `json:"rate"`
	Pass    bool    `json:"pass"`
	Stable  bool    `json:"stable"`
	Windows int     `json:"windows"`
	// Report is the last window's.
	Report *Report `json:"report"`
}

// SLOResult is the search's answer.
type SLOResult struct {
	// Rate is the highest passing rate found; 0 when even MinRate
	// failed.
	Rate float64 `json:"rate"`
	// Best is the measurement at Rate (nil when Rate is 0).
	Best *Report `json:"best"`
	// Trials are every rate measured, in order.
	Trials []Trial `json:"trials"`
	// Target echoes the SLO.
	P99          time.Duration `json:"p99_target_ns"`
	MaxErrorRate float64       `json:"max_error_rate"`
}

func (s SLO) withDefaults() (SLO, error) {
	s.MaxErrorRate = cmp.Or(s.MaxErrorRate, 0.01)
	s.StartRate = cmp.Or(s.StartRate, 10)
	s.MaxRate = cmp.Or(s.MaxRate, 100000)
	s.MinRate = cmp.Or(s.MinRate, s.StartRate/64)
	s.Window = cmp.Or(s.Window, DefaultWindow)
	s.MaxWindows = cmp.Or(s.MaxWindows, 4)
	s.Stability = cmp.Or(s.Stability, 0.10)
	s.Precision = cmp.Or(s.Precision, 0.05)
	switch {
	case s.P99 <= 0:
		return s, errors.New("slo: no p99 target (want e.g. 100ms)")
	case s.MaxErrorRate < 0 || s.MaxErrorRate >= 1:
		return s, fmt.Errorf("slo: max error rate %g: want 0 to 1", s.MaxErrorRate)
	case s.StartRate <= 0 || s.MaxRate < s.StartRate || s.MinRate <= 0 || s.MinRate > s.StartRate:
		return s, fmt.Errorf("slo: min rate %g, start rate %g, max rate %g: want 0 < min <= start <= max", s.MinRate, s.StartRate, s.MaxRate)
	case s.Window <= 0 || s.MaxWindows < 1:
		return s, fmt.Errorf("slo: window %s x %d: want both > 0", s.Window, s.MaxWindows)
	case s.Stability <= 0 || s.Precision <= 0:
		return s, fmt.Errorf("slo: stability %g, precision %g: want both > 0", s.Stability, s.Precision)
	}
	return s, nil
}

// FindSLO searches for the highest rate meeting slo with cfg's target and
// endpoint; cfg's Rate, Concurrency, Duration and Pacer are set by the
// search. each, when not nil, is called with every trial as it ends.
func FindSLO(ctx context.Context, cfg Config, slo SLO, each func(Trial)) (*SLOResult, error) {
	slo, err := slo.withDefaults()
	if err != nil {
		return nil, err
	}
	cfg.Rate, cfg.Concurrency, cfg.Duration, cfg.Pacer = slo.StartRate, 0, slo.Window, PacerConstant
	p, err := prepare(ctx, cfg)
	if err != nil {
		return nil, err
	}
	res := &SLOResult{P99: slo.P99, MaxErrorRate: slo.MaxErrorRate}
	measure := func(rate float64) (bool, error) {
		t, err := p.measure(ctx, slo, rate)
		if err != nil {
			return false, err
		}
		res.Trials = append(res.Trials, t)
		if each != nil {
			each(t)
		}
		if t.Pass && rate > res.Rate {
			res.Rate, res.Best = rate, t.Report
		}
		return t.Pass, nil
	}
	return res, errors.Join(search(slo, measure), p.finish())
}

// search runs the rate search with measure saying whether a rate passes.
func search(slo SLO, measure func(rate float64) (bool, error)) error {
	lo, hi := 0.0, 0.0
	ok, err := measure(slo.StartRate)
	if err != nil {
		return err
	}
	if ok {
		// Grow until a rate fails or the cap passes.
		for lo = slo.StartRate; hi == 0; {
			if lo >= slo.MaxRate {
				return nil
			}
			rate := math.Min(2*lo, slo.MaxRate)
			if ok, err = measure(rate); err != nil {
				return err
			}
			if ok {
				lo = rate
			} else {
				hi = rate
			}
		}
	} else {
		// Shrink until a rate passes or the floor fails too.
		for hi = slo.StartRate; lo == 0; {
			rate := roundRate(hi / 2)
			if rate < slo.MinRate {
				return nil
			}
			if ok, err = measure(rate); err != nil {
				return err
			}
			if ok {
				lo = rate
			} else {
				hi = rate
			}
		}
	}
	for hi-lo >= slo.Precision*lo {
		mid := roundRate((lo + hi) / 2)
		if mid <= lo || mid >= hi {
			break
		}
		ok, err := measure(mid)
		if err != nil {
			return err
		}
		if ok {
			lo = mid
		} else {
			hi = mid
		}
	}
	return nil
}

// roundRate keeps three significant digits, so reported rates read well.
func roundRate(r float64) float64 {
	v, _ := strconv.ParseFloat(strconv.FormatFloat(r, 'g', 3, 64), 64)
	return v
}

// measure runs windows at rate until two consecutive ones agree.
func (p *plan) measure(ctx context.Context, slo SLO, rate float64) (Trial, error) {
	c := p.cfg
	c.Rate = rate
	t := Trial{Rate: rate}
	var prev *Report
	for t.Windows < slo.MaxWindows {
		rep, err := p.attack(ctx, c)
		if err != nil {
			return t, err
		}
		t.Windows++
		t.Report = rep
		t.Pass = slo.passes(rep, rate)
		if rep.Latency.P99 > 2*slo.P99 || rep.ErrorRate() > 2*slo.MaxErrorRate+0.01 {
			t.Pass, t.Stable = false, true
			return t, nil
		}
		if t.Pass && rep.Latency.P99 < slo.P99/2 && rep.ErrorRate() == 0 {
			t.Stable = true
			return t, nil
		}
		if prev != nil && within(prev.Latency.P99.Seconds(), rep.Latency.P99.Seconds(), slo.Stability) &&
			within(prev.Throughput, rep.Throughput, slo.Stability) {
			t.Stable = true
			return t, nil
		}
		prev = rep
	}
	return t, nil
}

func (s SLO) passes(r *Report, rate float64) bool {
	return r.Requests > 0 && r.Latency.P99 <= s.P99 && r.ErrorRate() <= s.MaxErrorRate && r.Throughput >= 0.9*rate
}

// within reports whether a and b differ by less than frac of the larger.
func within(a, b, frac float64) bool {
	return math.Abs(a-b) < frac*math.Max(math.Abs(a), math.Abs(b))
}

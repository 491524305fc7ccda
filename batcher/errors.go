package batcher

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/inferd/inferd/httperr"
)

// Sentinels, for errors.Is. The errors Submit and Admit return are these or
// instances of them carrying a more specific message: every one is an
// *httperr.Error whose status (httperr.Status) is its sentinel's, 400, 500,
// 503 or 504, and an instance matches its sentinel, and no other, with
// errors.Is (for example errors.Is(err, ErrQueueFull)).
//
// An error's RetryAfter (httperr.RetryAfter) is how long the caller should
// wait before trying again, from the same prediction that rejected the
// request: for ErrOverloaded the time the queue ahead needs to drain until
// the request would fit its budget, for ErrCannotMeetDeadline the time until
// the device is free (when the request's own run fits its budget at all),
// for ErrQueueFull the time until the next batch leaves the queue. It is 0
// where it does not apply (other kinds, a budget too short for the model, or
// nothing measured yet). It is not rounded: a server writing Retry-After in
// whole seconds should round it up, to at least 1.
var (
	// ErrQueueFull (503): the queue holds QueueCapacity requests; the
	// request was rejected at once without waiting. The instance names the
	// capacity and the knob to turn.
	ErrQueueFull = sentinel(http.StatusServiceUnavailable, "batcher: queue full")

	// ErrOverloaded (503): admission predicted that, behind the work
	// already queued at its priority or higher and the batches running, the
	// request would be answered after its deadline; it was rejected at once,
	// never queued. The instance says the predicted wait and the budget;
	// RetryAfter says when the queue should have drained enough.
	ErrOverloaded = sentinel(http.StatusServiceUnavailable, "batcher: overloaded")

	// ErrDeadlineExceeded (504): the request's deadline passed while it was
	// queued; it never ran.
	ErrDeadlineExceeded = sentinel(http.StatusGatewayTimeout, "batcher: deadline exceeded while queued")

	// ErrCannotMeetDeadline (503): the request would finish after its
	// deadline even if it ran next (its own run, after the batch running
	// now), so it was rejected without running: at once at admission, or by
	// the adaptive window when its turn came. RetryAfter is 0 when its own
	// run alone does not fit its budget: retrying cannot help, a longer
	// timeout can.
	ErrCannotMeetDeadline = sentinel(http.StatusServiceUnavailable, "batcher: cannot meet deadline: predicted completion is past the request deadline")

	// ErrClosed (503): the batcher is closed, or closing gave up (its
	// context ended) before the request ran.
	ErrClosed = sentinel(http.StatusServiceUnavailable, "batcher: closed")

	// ErrBadRequest (400): the request is invalid (rows or priority out of
	// range, negative timeout). The instance says which field.
	ErrBadRequest = sentinel(http.StatusBadRequest, "batcher: bad request")

	// ErrRunFailed (the status of the Runner's error, httperr.Status: 500
	// unless it carries one): the Runner returned an error for the batch
	// holding this request. The instance wraps the Runner's error, so
	// errors.Is and errors.As reach it too.
	ErrRunFailed = sentinel(http.StatusInternalServerError, "batcher: run failed")

	// ErrRunnerPanic (500): the Runner panicked on the batch holding this
	// request; the message carries the panic value, and the instance wraps
	// it when it is an error.
	ErrRunnerPanic = sentinel(http.StatusInternalServerError, "batcher: runner panicked")
)

func sentinel(status int, msg string) error { return httperr.New(status, errors.New(msg)) }

// instance is an instance of a sentinel, in one allocation: the
// *httperr.Error that is returned and the cause it wraps.
type instance struct {
	e   httperr.Error
	why why
}

// why is the cause of an instance: its message, and a chain that holds the
// sentinel (for errors.Is) and the underlying error if there is one (for
// errors.Is and errors.As).
type why struct {
	msg  string
	errs [2]error // the sentinel, then the underlying error or nil
}

func (w *why) Error() string { return w.msg }

func (w *why) Unwrap() []error {
	if w.errs[1] == nil {
		return w.errs[:1]
	}
	return w.errs[:]
}

// newInstance returns an instance of kind with status, retry, the
// underlying error cause (nil for none) and the message msg.
func newInstance(kind error, status int, retry time.Duration, cause error, msg string) *httperr.Error {
	in := &instance{
		e:   httperr.Error{Status: status, RetryAfter: retry},
		why: why{msg: msg, errs: [2]error{kind, cause}},
	}
	in.e.Err = &in.why
	return &in.e
}

// newQueueFull builds an ErrQueueFull instance. New builds the one without a
// RetryAfter once, so rejecting before anything is measured does not
// allocate.
func newQueueFull(capacity int, retry time.Duration) error {
	return newInstance(ErrQueueFull, http.StatusServiceUnavailable, retry, nil,
		fmt.Sprintf("batcher: queue full (capacity %d): raise queue_capacity or add replicas", capacity))
}

// overloaded builds an ErrOverloaded instance.
func overloaded(wait, limit, budget time.Duration) error {
	if limit >= budget {
		return newInstance(ErrOverloaded, http.StatusServiceUnavailable, wait-budget, nil,
			fmt.Sprintf("batcher: overloaded: predicted wait %v exceeds the request's deadline budget of %v; retry later or add replicas",
				roundDur(wait), roundDur(budget)))
	}
	return newInstance(ErrOverloaded, http.StatusServiceUnavailable, wait-limit, nil,
		fmt.Sprintf("batcher: overloaded: predicted wait %v exceeds %v, the share of the request's deadline budget of %v that admission fills (admission_share); retry later or add replicas",
			roundDur(wait), roundDur(limit), roundDur(budget)))
}

// cannotMeet builds an ErrCannotMeetDeadline instance for a request whose
// budget is shorter than next, its predicted wait if it ran next, of which
// own is its own batch's run.
func cannotMeet(next, own, budget time.Duration) error {
	if own > budget {
		return newInstance(ErrCannotMeetDeadline, http.StatusServiceUnavailable, 0, nil,
			fmt.Sprintf("batcher: cannot meet deadline: its batch alone runs for %v, longer than the request's deadline budget of %v; raise the request's timeout or default_timeout",
				roundDur(own), roundDur(budget)))
	}
	return newInstance(ErrCannotMeetDeadline, http.StatusServiceUnavailable, next-budget, nil,
		fmt.Sprintf("batcher: cannot meet deadline: predicted wait %v even if run next (the device is busy) exceeds the request's deadline budget of %v; retry later",
			roundDur(next), roundDur(budget)))
}

// roundDur rounds d to three or four significant digits for a message.
func roundDur(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond)
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	default:
		return d.Round(time.Microsecond)
	}
}

// badRequest builds an ErrBadRequest instance.
func badRequest(format string, args ...any) error {
	return newInstance(ErrBadRequest, http.StatusBadRequest, 0, nil, "batcher: bad request: "+fmt.Sprintf(format, args...))
}

// runFailed wraps a Runner's error. The status the Runner's error carries
// (for example a 400 for a malformed tensor) is kept.
func runFailed(err error) error {
	return newInstance(ErrRunFailed, httperr.Status(err), 0, err, "batcher: run failed: "+err.Error())
}

// runnerPanic turns a recovered panic value into an error.
func runnerPanic(p any) error {
	cause, _ := p.(error)
	return newInstance(ErrRunnerPanic, http.StatusInternalServerError, 0, cause, fmt.Sprintf("batcher: runner panicked: %v", p))
}

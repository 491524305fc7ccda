package batcher

import (
	"errors"
	"fmt"
	"time"
)

// Error is the error type Submit returns. StatusCode gives the HTTP status
// the server should answer with. Every Error matches its kind's sentinel with
// errors.Is (for example errors.Is(err, ErrQueueFull)); Unwrap gives the
// underlying cause, which for a failed run is the Runner's own error.
type Error struct {
	code  int
	msg   string
	kind  *Error        // the sentinel this error is an instance of; nil for sentinels
	cause error         // what Unwrap returns
	retry time.Duration // what RetryAfter returns
}

// Error returns the message, which starts with "batcher: ".
func (e *Error) Error() string { return e.msg }

// StatusCode is the HTTP status for this error: 400, 500, 503 or 504.
func (e *Error) StatusCode() int { return e.code }

// RetryAfter is how long the caller should wait before trying again, from
// the same prediction that rejected the request: for ErrOverloaded the time
// the queue ahead needs to drain until the request would fit its budget,
// for ErrCannotMeetDeadline the time until the device is free (when the
// request's own run fits its budget at all), for ErrQueueFull the time until
// the next batch leaves the queue. It is 0 where it does not apply (other
// kinds, a budget too short for the model, or nothing measured yet). It is
// not rounded: a server writing Retry-After in whole seconds should round it
// up, to at least 1.
func (e *Error) RetryAfter() time.Duration { return e.retry }

// Unwrap returns the cause: the Runner's error for ErrRunFailed, the panic
// value if it was an error for ErrRunnerPanic, otherwise nil.
func (e *Error) Unwrap() error { return e.cause }

// Is reports whether target is the sentinel of e's kind.
func (e *Error) Is(target error) bool {
	return e.kind != nil && target == error(e.kind)
}

// Sentinels, for errors.Is. The errors Submit returns are these or instances
// of them carrying a more specific message.
var (
	// ErrQueueFull (503): the queue holds QueueCapacity requests; the
	// request was rejected at once without waiting. The instance names the
	// capacity and the knob to turn.
	ErrQueueFull = &Error{code: 503, msg: "batcher: queue full"}

	// ErrOverloaded (503): admission predicted that, behind the work
	// already queued at its priority or higher and the batches running, the
	// request would be answered after its deadline; it was rejected at once,
	// never queued. The instance says the predicted wait and the budget;
	// RetryAfter says when the queue should have drained enough.
	ErrOverloaded = &Error{code: 503, msg: "batcher: overloaded"}

	// ErrDeadlineExceeded (504): the request's deadline passed while it was
	// queued; it never ran.
	ErrDeadlineExceeded = &Error{code: 504, msg: "batcher: deadline exceeded while queued"}

	// ErrCannotMeetDeadline (503): the request would finish after its
	// deadline even if it ran next (its own run, after the batch running
	// now), so it was rejected without running: at once at admission, or by
	// the adaptive window when its turn came. RetryAfter is 0 when its own
	// run alone does not fit its budget: retrying cannot help, a longer
	// timeout can.
	ErrCannotMeetDeadline = &Error{code: 503, msg: "batcher: cannot meet deadline: predicted completion is past the request deadline"}

	// ErrClosed (503): the batcher is closed, or closing gave up (its
	// context ended) before the request ran.
	ErrClosed = &Error{code: 503, msg: "batcher: closed"}

	// ErrBadRequest (400): the request is invalid (rows or priority out of
	// range, negative timeout). The instance says which field.
	ErrBadRequest = &Error{code: 400, msg: "batcher: bad request"}

	// ErrRunFailed (500 unless the Runner's error has a StatusCode method):
	// the Runner returned an error for the batch holding this request.
	ErrRunFailed = &Error{code: 500, msg: "batcher: run failed"}

	// ErrRunnerPanic (500): the Runner panicked on the batch holding this
	// request; the message carries the panic value.
	ErrRunnerPanic = &Error{code: 500, msg: "batcher: runner panicked"}
)

// newQueueFull builds an ErrQueueFull instance. New builds the one without a
// RetryAfter once, so rejecting before anything is measured does not
// allocate.
func newQueueFull(capacity int, retry time.Duration) *Error {
	return &Error{
		code:  503,
		kind:  ErrQueueFull,
		retry: retry,
		msg:   fmt.Sprintf("batcher: queue full (capacity %d): raise queue_capacity or add replicas", capacity),
	}
}

// overloaded builds an ErrOverloaded instance.
func overloaded(wait, budget time.Duration) *Error {
	return &Error{
		code:  503,
		kind:  ErrOverloaded,
		retry: wait - budget,
		msg: fmt.Sprintf("batcher: overloaded: predicted wait %v exceeds the request's deadline budget of %v; retry later or add replicas",
			roundDur(wait), roundDur(budget)),
	}
}

// cannotMeet builds an ErrCannotMeetDeadline instance for a request whose
// budget is shorter than next, its predicted wait if it ran next, of which
// own is its own batch's run.
func cannotMeet(next, own, budget time.Duration) *Error {
	e := &Error{code: 503, kind: ErrCannotMeetDeadline}
	if own > budget {
		e.msg = fmt.Sprintf("batcher: cannot meet deadline: its batch alone runs for %v, longer than the request's deadline budget of %v; raise the request's timeout or default_timeout",
			roundDur(own), roundDur(budget))
		return e
	}
	e.retry = next - budget
	e.msg = fmt.Sprintf("batcher: cannot meet deadline: predicted wait %v even if run next (the device is busy) exceeds the request's deadline budget of %v; retry later",
		roundDur(next), roundDur(budget))
	return e
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
func badRequest(format string, args ...any) *Error {
	return &Error{code: 400, kind: ErrBadRequest, msg: "batcher: bad request: " + fmt.Sprintf(format, args...)}
}

// runFailed wraps a Runner's error. A StatusCode method on the Runner's error
// (for example a 400 for a malformed tensor) is kept.
func runFailed(err error) *Error {
	code := 500
	var sc interface{ StatusCode() int }
	if errors.As(err, &sc) {
		code = sc.StatusCode()
	}
	return &Error{code: code, kind: ErrRunFailed, cause: err, msg: "batcher: run failed: " + err.Error()}
}

// runnerPanic turns a recovered panic value into an error.
func runnerPanic(p any) *Error {
	e := &Error{code: 500, kind: ErrRunnerPanic, msg: fmt.Sprintf("batcher: runner panicked: %v", p)}
	if err, ok := p.(error); ok {
		e.cause = err
	}
	return e
}

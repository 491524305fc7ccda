package batcher

import (
	"errors"
	"fmt"
)

// Error is the error type Submit returns. StatusCode gives the HTTP status
// the server should answer with. Every Error matches its kind's sentinel with
// errors.Is (for example errors.Is(err, ErrQueueFull)); Unwrap gives the
// underlying cause, which for a failed run is the Runner's own error.
type Error struct {
	code  int
	msg   string
	kind  *Error // the sentinel this error is an instance of; nil for sentinels
	cause error  // what Unwrap returns
}

// Error returns the message, which starts with "batcher: ".
func (e *Error) Error() string { return e.msg }

// StatusCode is the HTTP status for this error: 400, 500, 503 or 504.
func (e *Error) StatusCode() int { return e.code }

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

	// ErrDeadlineExceeded (504): the request's deadline passed while it was
	// queued; it never ran.
	ErrDeadlineExceeded = &Error{code: 504, msg: "batcher: deadline exceeded while queued"}

	// ErrCannotMeetDeadline (503): adaptive shedding. The cost model
	// predicts the request would finish after its deadline even if it ran
	// next, so it was rejected without running.
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

// newQueueFull is the per-batcher ErrQueueFull instance (built once in New so
// rejecting does not allocate).
func newQueueFull(capacity int) *Error {
	return &Error{
		code: 503,
		kind: ErrQueueFull,
		msg:  fmt.Sprintf("batcher: queue full (capacity %d): raise queue_capacity or add replicas", capacity),
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

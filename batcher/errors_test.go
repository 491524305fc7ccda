package batcher

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/inferd/inferd/httperr"
)

type codedErr struct{ code int }

func (e *codedErr) Error() string   { return "tensor shape mismatch" }
func (e *codedErr) StatusCode() int { return e.code }

func TestErrors(t *testing.T) {
	cases := []struct {
		name     string
		err      error
		sentinel error
		code     int
		msg      string
		cause    error // what errors.Is must also find; nil for none
		retry    time.Duration
	}{
		// The sentinels themselves.
		{"queue full sentinel", ErrQueueFull, ErrQueueFull, 503, "batcher: queue full", nil, 0},
		{"deadline", ErrDeadlineExceeded, ErrDeadlineExceeded, 504, "batcher: deadline exceeded while queued", nil, 0},
		{"cannot meet", ErrCannotMeetDeadline, ErrCannotMeetDeadline, 503, "batcher: cannot meet deadline: predicted completion is past the request deadline", nil, 0},
		{"closed", ErrClosed, ErrClosed, 503, "batcher: closed", nil, 0},
		{"overloaded sentinel", ErrOverloaded, ErrOverloaded, 503, "batcher: overloaded", nil, 0},
		// Overload names the prediction, the budget and what to do, and
		// says when to retry: when the queue will have drained enough.
		{"overloaded", overloaded(12345678901*time.Nanosecond, 5*time.Second, 5*time.Second), ErrOverloaded, 503,
			"batcher: overloaded: predicted wait 12.3s exceeds the request's deadline budget of 5s; retry later or add replicas", nil, 7345678901},
		// A budget shorter than the request's own run: no retry helps.
		{"cannot meet, too short", cannotMeet(160*time.Millisecond, 149*time.Millisecond, 100*time.Millisecond), ErrCannotMeetDeadline, 503,
			"batcher: cannot meet deadline: its batch alone runs for 149ms, longer than the request's deadline budget of 100ms; raise the request's timeout or default_timeout", nil, 0},
		// The device is busy: retry once it is free.
		{"cannot meet, busy", cannotMeet(160*time.Millisecond, 23*time.Millisecond, 100*time.Millisecond), ErrCannotMeetDeadline, 503,
			"batcher: cannot meet deadline: predicted wait 160ms even if run next (the device is busy) exceeds the request's deadline budget of 100ms; retry later", nil, 60 * time.Millisecond},
		{"queue full with retry", newQueueFull(16, 3*time.Millisecond), ErrQueueFull, 503, "batcher: queue full (capacity 16): raise queue_capacity or add replicas", nil, 3 * time.Millisecond},
		// The per-batcher queue-full error names the capacity and the knob.
		{"queue full", newQueueFull(1024, 0), ErrQueueFull, 503, "batcher: queue full (capacity 1024): raise queue_capacity or add replicas", nil, 0},
		// Validation errors say what is wrong.
		{"bad request", badRequest("rows %d out of range [1, %d]", 0, 64), ErrBadRequest, 400, "batcher: bad request: rows 0 out of range [1, 64]", nil, 0},
		// Runner errors keep their message and identity.
		{"run failed", runFailed(io.ErrUnexpectedEOF), ErrRunFailed, 500, "batcher: run failed: unexpected EOF", io.ErrUnexpectedEOF, 0},
		// A runner error with a status code keeps it.
		{"run failed coded", runFailed(&codedErr{422}), ErrRunFailed, 422, "batcher: run failed: tensor shape mismatch", nil, 0},
		// Panics carry the value's text; an error value stays reachable.
		{"panic", runnerPanic("index out of range"), ErrRunnerPanic, 500, "batcher: runner panicked: index out of range", nil, 0},
		{"panic error", runnerPanic(io.EOF), ErrRunnerPanic, 500, "batcher: runner panicked: EOF", io.EOF, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !errors.Is(c.err, c.sentinel) {
				t.Errorf("errors.Is(%v, sentinel) = false", c.err)
			}
			for _, other := range []error{ErrQueueFull, ErrOverloaded, ErrDeadlineExceeded, ErrCannotMeetDeadline, ErrClosed, ErrBadRequest, ErrRunFailed, ErrRunnerPanic} {
				if other != c.sentinel && errors.Is(c.err, other) {
					t.Errorf("%v also matches %v", c.err, other)
				}
			}
			var be *httperr.Error
			if !errors.As(c.err, &be) || be.StatusCode() != c.code {
				t.Errorf("status %v, want %d", be, c.code)
			}
			if c.err.Error() != c.msg {
				t.Errorf("message %q, want %q", c.err.Error(), c.msg)
			}
			if first := []rune(strings.TrimPrefix(c.err.Error(), "batcher: "))[0]; unicode.IsUpper(first) {
				t.Errorf("message %q is not lowercase", c.err)
			}
			if got := c.err.(*httperr.Error).RetryAfter; got != c.retry {
				t.Errorf("RetryAfter %v, want %v", got, c.retry)
			}
			if c.cause != nil && !errors.Is(c.err, c.cause) {
				t.Errorf("errors.Is(%v, %v) = false", c.err, c.cause)
			}
		})
	}
	var ce *codedErr
	if !errors.As(runFailed(&codedErr{422}), &ce) {
		t.Error("errors.As does not reach the runner's error type")
	}
}

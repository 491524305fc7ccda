package batcher

import (
	"errors"
	"io"
	"strings"
	"testing"
	"unicode"
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
	}{
		// The sentinels themselves.
		{"queue full sentinel", ErrQueueFull, ErrQueueFull, 503, "batcher: queue full", nil},
		{"deadline", ErrDeadlineExceeded, ErrDeadlineExceeded, 504, "batcher: deadline exceeded while queued", nil},
		{"cannot meet", ErrCannotMeetDeadline, ErrCannotMeetDeadline, 503, "batcher: cannot meet deadline: predicted completion is past the request deadline", nil},
		{"closed", ErrClosed, ErrClosed, 503, "batcher: closed", nil},
		// The per-batcher queue-full error names the capacity and the knob.
		{"queue full", newQueueFull(1024), ErrQueueFull, 503, "batcher: queue full (capacity 1024): raise queue_capacity or add replicas", nil},
		// Validation errors say what is wrong.
		{"bad request", badRequest("rows %d out of range [1, %d]", 0, 64), ErrBadRequest, 400, "batcher: bad request: rows 0 out of range [1, 64]", nil},
		// Runner errors keep their message and identity.
		{"run failed", runFailed(io.ErrUnexpectedEOF), ErrRunFailed, 500, "batcher: run failed: unexpected EOF", io.ErrUnexpectedEOF},
		// A runner error with a status code keeps it.
		{"run failed coded", runFailed(&codedErr{422}), ErrRunFailed, 422, "batcher: run failed: tensor shape mismatch", nil},
		// Panics carry the value's text; an error value stays reachable.
		{"panic", runnerPanic("index out of range"), ErrRunnerPanic, 500, "batcher: runner panicked: index out of range", nil},
		{"panic error", runnerPanic(io.EOF), ErrRunnerPanic, 500, "batcher: runner panicked: EOF", io.EOF},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !errors.Is(c.err, c.sentinel) {
				t.Errorf("errors.Is(%v, sentinel) = false", c.err)
			}
			for _, other := range []error{ErrQueueFull, ErrDeadlineExceeded, ErrCannotMeetDeadline, ErrClosed, ErrBadRequest, ErrRunFailed, ErrRunnerPanic} {
				if other != c.sentinel && errors.Is(c.err, other) {
					t.Errorf("%v also matches %v", c.err, other)
				}
			}
			var be *Error
			if !errors.As(c.err, &be) || be.StatusCode() != c.code {
				t.Errorf("status %v, want %d", be, c.code)
			}
			if c.err.Error() != c.msg {
				t.Errorf("message %q, want %q", c.err.Error(), c.msg)
			}
			if first := []rune(strings.TrimPrefix(c.err.Error(), "batcher: "))[0]; unicode.IsUpper(first) {
				t.Errorf("message %q is not lowercase", c.err)
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

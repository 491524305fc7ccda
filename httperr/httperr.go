// Package httperr is the error type every layer of the server uses to say
// "answer this with a 4xx or 5xx": the parsers (kserve, preprocess), the
// memory budget, the batcher, the device layer (gpu) and the HTTP front end
// itself. The front end answers any error with Status and, for a 503 or 429,
// a Retry-After from RetryAfter; the layers below need not know HTTP beyond
// the status they choose. It plays the part of VictoriaMetrics'
// httpserver.ErrorWithStatusCode and caddyhttp.Error.
//
// An *Error's message is its cause's, unchanged, so wrapping an error in one
// changes what the client is told only in the status line:
//
//	return httperr.Errorf(http.StatusBadRequest, "%w: %s", ErrInvalidJSON, err)
//
// and a caller still tests the cause with errors.Is.
package httperr

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Error is an error with the HTTP status a front end answers it with.
type Error struct {
	// Status is the HTTP status, 400 to 599. Status gives 500 for an Error
	// whose Status is outside that range.
	Status int

	// Err is the cause; Error returns its message. It must not be nil.
	Err error

	// RetryAfter, for a 503 or 429, is how long the client should wait
	// before trying again; 0 when it is not known. It is not rounded: a
	// server writing Retry-After in whole seconds rounds it up.
	RetryAfter time.Duration
}

// New returns an Error with status wrapping err.
func New(status int, err error) *Error { return &Error{Status: status, Err: err} }

// Errorf returns an *Error with status and the message
// fmt.Errorf(format, args...) gives; %w verbs wrap as they do there.
func Errorf(status int, format string, args ...any) error {
	return &Error{Status: status, Err: fmt.Errorf(format, args...)}
}

// Error returns the cause's message.
func (e *Error) Error() string { return e.Err.Error() }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// StatusCode returns e.Status.
func (e *Error) StatusCode() int { return e.Status }

// Status returns the HTTP status err carries: that of the first error in
// its chain with a StatusCode method (an *Error, or a type of a package
// that does not import this one), when it is 400 to 599; otherwise, and
// for nil, 500.
func Status(err error) int {
	var sc interface{ StatusCode() int }
	if errors.As(err, &sc) {
		if c := sc.StatusCode(); c >= 400 && c <= 599 {
			return c
		}
	}
	return http.StatusInternalServerError
}

// RetryAfter returns the RetryAfter of the first *Error in err's chain; 0
// when there is none.
func RetryAfter(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

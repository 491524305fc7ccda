package kserve

import (
	"errors"
	"fmt"
	"net/http"
)

// Sentinel errors, wrapped where a caller may want to tell the cause
// apart; every parse error is an *Error with status 400 either way.
var (
	// ErrInvalidJSON means the request (or its JSON header) is not valid
	// JSON.
	ErrInvalidJSON = errors.New("malformed request JSON")

	// ErrUnsupportedDatatype means a tensor declares a datatype this
	// server does not handle: BYTES (strings) or an unknown name.
	ErrUnsupportedDatatype = errors.New("unsupported datatype")
)

// Error is an error with the HTTP status the server should answer with.
// Its message is the wrapped error's; servers send it with AppendError.
type Error struct {
	// Code is the HTTP status, 400 for everything the parser rejects.
	Code int
	// Err is the cause.
	Err error
}

// Error returns the message of the wrapped error.
func (e *Error) Error() string { return e.Err.Error() }

// StatusCode returns the HTTP status code for the error.
func (e *Error) StatusCode() int { return e.Code }

// Unwrap returns the wrapped error.
func (e *Error) Unwrap() error { return e.Err }

// badRequest returns a 400 *Error with a formatted message; %w verbs wrap.
func badRequest(format string, args ...any) error {
	return &Error{Code: http.StatusBadRequest, Err: fmt.Errorf(format, args...)}
}

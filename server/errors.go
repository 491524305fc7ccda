package server

import (
	"errors"
	"fmt"
	"net/http"
)

// Error is a request error with the HTTP status it is answered with.
type Error struct {
	Code int
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// StatusCode returns the HTTP status.
func (e *Error) StatusCode() int { return e.Code }

func errorf(code int, format string, args ...any) error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// statusOf returns the HTTP status an error carries; 500 when it carries
// none.
func statusOf(err error) int {
	var sc interface{ StatusCode() int }
	if errors.As(err, &sc) {
		if c := sc.StatusCode(); c >= 400 && c <= 599 {
			return c
		}
	}
	return http.StatusInternalServerError
}

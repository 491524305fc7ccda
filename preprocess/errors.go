package preprocess

import (
	"errors"
	"net/http"
)

// Sentinel errors. Every error that Process returns is an *Error wrapping
// one of them, so callers can test the cause with errors.Is and the HTTP
// status with errors.As.
var (
	// ErrNotImage means the bytes are not a JPEG or PNG this package can
	// decode: an unknown format, a corrupt or truncated file, or a zero-size
	// image. Status 415.
	ErrNotImage = errors.New("not a JPEG or PNG image")

	// ErrTooLarge means the image header declares more pixels than
	// Config.MaxPixels allows; the image is rejected before it is decoded.
	// Status 415.
	ErrTooLarge = errors.New("image too large")

	// ErrDst means Process was given a destination whose length is not
	// RowBytes: a bug in the caller, not in the request. Status 500.
	ErrDst = errors.New("bad destination buffer")

	// ErrConfig is wrapped by every error New returns.
	ErrConfig = errors.New("invalid preprocess config")
)

// Error is an error with the HTTP status code the server should answer
// with. Its message is the wrapped error's.
type Error struct {
	// Code is the HTTP status: 415 for images the package cannot accept,
	// 500 for caller bugs.
	Code int
	// Err is the cause; it wraps one of the sentinel errors.
	Err error
}

// Error returns the message of the wrapped error.
func (e *Error) Error() string { return e.Err.Error() }

// StatusCode returns the HTTP status code for the error.
func (e *Error) StatusCode() int { return e.Code }

// Unwrap returns the wrapped error.
func (e *Error) Unwrap() error { return e.Err }

func unsupported(err error) error {
	return &Error{Code: http.StatusUnsupportedMediaType, Err: err}
}

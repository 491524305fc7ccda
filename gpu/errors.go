package gpu

import (
	"errors"
	"net/http"
)

// Error is an error of this package with the HTTP status a front end should
// answer with when it reaches a client.
type Error struct {
	Code int   // HTTP status
	Err  error // what went wrong
}

func (e *Error) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// StatusCode returns the HTTP status for the error.
func (e *Error) StatusCode() int { return e.Code }

var (
	// ErrLibrary is returned (wrapped) when ONNX Runtime cannot be loaded.
	ErrLibrary = errors.New("onnx runtime library")
	// ErrCUDAUnavailable is returned (wrapped) when a cuda device is asked
	// for and the CUDA execution provider cannot be set up.
	ErrCUDAUnavailable = errors.New("cuda execution provider unavailable")
	// ErrBadModel is returned (wrapped) when a model file cannot be opened
	// or does not have the shape of a servable model.
	ErrBadModel = errors.New("bad model")
	// ErrClosed is returned by Acquire after Close.
	ErrClosed = &Error{Code: http.StatusServiceUnavailable, Err: errors.New("gpu: model closed")}
	// ErrBatchSize is returned (wrapped) when a batch is larger than the
	// largest bucket.
	ErrBatchSize = errors.New("batch size out of range")
)

func internal(err error) error { return &Error{Code: http.StatusInternalServerError, Err: err} }

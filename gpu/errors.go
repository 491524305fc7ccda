package gpu

import (
	"errors"
	"net/http"

	"github.com/inferd/inferd/httperr"
)

var (
	// ErrLibrary is returned (wrapped) when ONNX Runtime cannot be loaded.
	ErrLibrary = errors.New("onnx runtime library")
	// ErrCUDAUnavailable is returned (wrapped) when a cuda device is asked
	// for and the CUDA execution provider cannot be set up.
	ErrCUDAUnavailable = errors.New("cuda execution provider unavailable")
	// ErrPinnedMemory is returned (wrapped) when cuda.pinned_memory is on
	// and page-locked host memory cannot be had from the CUDA runtime, or
	// when an allocation of it fails.
	ErrPinnedMemory = errors.New("pinned host memory unavailable")
	// ErrBadModel is returned (wrapped) when a model file cannot be opened
	// or does not have the shape of a servable model.
	ErrBadModel = errors.New("bad model")
	// ErrClosed (503) is returned by Acquire after Close.
	ErrClosed error = httperr.New(http.StatusServiceUnavailable, errors.New("gpu: model closed"))
	// ErrBatchSize is returned (wrapped, with status 400) when a batch is
	// larger than the largest bucket.
	ErrBatchSize = errors.New("batch size out of range")
)

// internal is a failure of the runtime or the device: a 500 wrapping err.
func internal(err error) error { return httperr.New(http.StatusInternalServerError, err) }

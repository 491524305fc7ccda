package preprocess

import (
	"errors"
	"net/http"

	"github.com/inferd/inferd/httperr"
)

// Sentinel errors. Every error that Process returns is an *httperr.Error
// wrapping one of them, so callers can test the cause with errors.Is and
// read the HTTP status with httperr.Status.
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

// unsupported is an image this package cannot accept: a 415 wrapping err.
func unsupported(err error) error {
	return httperr.New(http.StatusUnsupportedMediaType, err)
}

package kserve

import (
	"errors"
	"net/http"

	"github.com/inferd/inferd/httperr"
)

// Sentinel errors, wrapped where a caller may want to tell the cause
// apart; every parse error is an *httperr.Error with status 400 either way.
var (
	// ErrInvalidJSON means the request (or its JSON header) is not valid
	// JSON.
	ErrInvalidJSON = errors.New("malformed request JSON")

	// ErrUnsupportedDatatype means a tensor declares a datatype this
	// server does not handle: BYTES (strings) or an unknown name.
	ErrUnsupportedDatatype = errors.New("unsupported datatype")
)

// badRequest returns a 400 *httperr.Error with a formatted message; %w verbs
// wrap.
func badRequest(format string, args ...any) error {
	return httperr.Errorf(http.StatusBadRequest, format, args...)
}

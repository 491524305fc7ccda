package auth

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/inferd/inferd/httperr"
)

// Sentinels, for errors.Is. Check returns them, or instances of them that
// name the model or the rate, each as an *httperr.Error with the status the
// client gets. Their texts are the HAProxy gateway's (configs/haproxy.cfg),
// word for word, so a client sees the same errors from a lone replica and
// from the cluster.
var (
	// ErrMissingKey (401): the request has neither an Authorization nor an
	// X-API-Key header.
	ErrMissingKey = errors.New("missing API key: send Authorization: Bearer KEY or X-API-Key: KEY")
	// ErrMalformedKey (401): a key longer than MaxKeyLen bytes, or with
	// bytes other than visible ASCII in it.
	ErrMalformedKey = errors.New("malformed API key")
	// ErrUnknownKey (401): no tenant of the keys file has the key's hash.
	ErrUnknownKey = errors.New("unknown API key")
	// ErrModelNotAllowed (403): the key's tenant may not use the model; the
	// instance names the model, not the models it may use (or says that
	// /recognize, which runs the default model, needs a key allowed every
	// model).
	ErrModelNotAllowed = errors.New("model not allowed for this key")
	// ErrMetricsNotAllowed (403): auth.metrics_key is set and the key's
	// tenant has no "metrics: true".
	ErrMetricsNotAllowed = errors.New("/metrics is not allowed for this key")
	// ErrRateLimited (429): the tenant's token bucket is empty; the
	// instance names the rate, and its RetryAfter says when a token comes.
	ErrRateLimited = errors.New("rate limit exceeded for this key")
)

// refusal is an instance of a sentinel with a message of its own.
type refusal struct {
	msg   string
	cause error
}

func (r *refusal) Error() string { return r.msg }
func (r *refusal) Unwrap() error { return r.cause }

var (
	errMissing   = httperr.New(http.StatusUnauthorized, ErrMissingKey)
	errMalformed = httperr.New(http.StatusUnauthorized, ErrMalformedKey)
	errUnknown   = httperr.New(http.StatusUnauthorized, ErrUnknownKey)
	errMetrics   = httperr.New(http.StatusForbidden, ErrMetricsNotAllowed)
	// errDefaultModel is the 403 of /recognize for a tenant not allowed
	// every model.
	errDefaultModel = httperr.New(http.StatusForbidden, &refusal{
		"/recognize runs the default model of a replica: only a key allowed every model may use it", ErrModelNotAllowed})
)

// modelNotAllowed is the 403 for model: `model "M" is not allowed for this
// key`.
func modelNotAllowed(model []byte) error {
	return httperr.New(http.StatusForbidden, &refusal{"model " + strconv.Quote(string(model)) + " is not allowed for this key", ErrModelNotAllowed})
}

// rateLimited is the 429 of a tenant at rate requests/s whose next token
// comes after wait: "rate limit of N requests/s exceeded for this key".
func rateLimited(rate float64, wait time.Duration) error {
	msg := "rate limit of " + strconv.FormatFloat(rate, 'f', -1, 64) + " requests/s exceeded for this key"
	return &httperr.Error{Status: http.StatusTooManyRequests, Err: &refusal{msg, ErrRateLimited}, RetryAfter: wait}
}

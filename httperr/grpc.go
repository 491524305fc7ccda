package httperr

import (
	"net/http"

	"google.golang.org/grpc/codes"
)

// FromGRPC is the HTTP status that stands for gRPC code c, where a gRPC
// answer is counted or reported as an HTTP one (the server's request
// metrics, the load tester's results): the inverse of the mapping the gRPC
// front end applies to the statuses its handlers return. A client that
// closed the call counts as 499, as nginx counts it.
func FromGRPC(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Canceled:
		return 499
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}

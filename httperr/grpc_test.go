package httperr

import (
	"testing"

	"google.golang.org/grpc/codes"
)

func TestFromGRPC(t *testing.T) {
	for c, want := range map[codes.Code]int{codes.OK: 200, codes.InvalidArgument: 400, codes.ResourceExhausted: 429,
		codes.Unavailable: 503, codes.Unauthenticated: 401, codes.PermissionDenied: 403, codes.NotFound: 404,
		codes.Internal: 500, codes.Unknown: 500, codes.DeadlineExceeded: 504, codes.Canceled: 499, codes.Unimplemented: 501} {
		if got := FromGRPC(c); got != want {
			t.Errorf("FromGRPC(%s) = %d, want %d", c, got, want)
		}
	}
}

package httperr

import (
	"errors"
	"fmt"
	"io"
	"testing"
	"time"
)

// coded is an error of a package that does not import httperr but says its
// status.
type coded int

func (c coded) Error() string   { return fmt.Sprintf("coded %d", int(c)) }
func (c coded) StatusCode() int { return int(c) }

func TestStatus(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, 500},
		{"plain error", io.EOF, 500},
		{"Error", New(404, io.EOF), 404},
		{"Errorf", Errorf(415, "not an image"), 415},
		// A layer that wraps with fmt.Errorf keeps the status below it.
		{"wrapped", fmt.Errorf("reading: %w", New(413, io.EOF)), 413},
		// The outermost status wins: a batcher's 500 over a runner's 400
		// is the batcher's to choose.
		{"nested", New(503, New(400, io.EOF)), 503},
		// Not an error status: the server cannot send it as one.
		{"2xx", New(200, io.EOF), 500},
		{"3xx", New(302, io.EOF), 500},
		{"out of range", New(600, io.EOF), 500},
		{"zero", &Error{Err: io.EOF}, 500},
		// A type of another package with a StatusCode method counts.
		{"foreign", fmt.Errorf("run: %w", coded(422)), 422},
		{"foreign out of range", coded(99), 500},
		{"multi", errors.Join(io.EOF, New(429, io.EOF)), 429},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Status(c.err); got != c.want {
				t.Errorf("Status(%v) = %d, want %d", c.err, got, c.want)
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	busy := &Error{Status: 503, Err: io.EOF, RetryAfter: time.Second}
	cases := []struct {
		name string
		err  error
		want time.Duration
	}{
		{"nil", nil, 0},
		{"plain error", io.EOF, 0},
		{"none", New(503, io.EOF), 0},
		{"set", busy, time.Second},
		{"wrapped", fmt.Errorf("reserve: %w", busy), time.Second},
		// The first *Error says, even when it says nothing: the error
		// that chose the status chooses the retry.
		{"outer without", New(500, busy), 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := RetryAfter(c.err); got != c.want {
				t.Errorf("RetryAfter(%v) = %v, want %v", c.err, got, c.want)
			}
		})
	}
}

func TestError(t *testing.T) {
	sentinel := errors.New("malformed request JSON")
	err := Errorf(400, "%w: unexpected end of input at %d", sentinel, 7)
	if got, want := err.Error(), "malformed request JSON: unexpected end of input at 7"; got != want {
		t.Errorf("message %q, want %q", got, want)
	}
	if !errors.Is(err, sentinel) {
		t.Error("Errorf's %w does not wrap")
	}
	var e *Error
	if !errors.As(err, &e) || e.Status != 400 || e.StatusCode() != 400 {
		t.Errorf("errors.As: %#v", e)
	}
	// The message is the cause's, byte for byte: no status prefix.
	if got := New(503, io.ErrUnexpectedEOF).Error(); got != io.ErrUnexpectedEOF.Error() {
		t.Errorf("New's message %q", got)
	}
	if !errors.Is(New(500, io.EOF), io.EOF) {
		t.Error("New does not unwrap to its cause")
	}
	// Without %w, args are formatted, not wrapped.
	if errors.Is(Errorf(400, "%v", sentinel), sentinel) {
		t.Errorf("Errorf wraps an argument formatted with %s", "%v")
	}
}

func ExampleStatus() {
	errNotImage := errors.New("not a JPEG or PNG image")
	err := fmt.Errorf("classify: %w", New(415, fmt.Errorf("%w: empty body", errNotImage)))
	fmt.Println(Status(err), errors.Is(err, errNotImage))
	fmt.Println(Status(errors.New("a bug")))
	// Output:
	// 415 true
	// 500
}

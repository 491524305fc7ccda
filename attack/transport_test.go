package attack

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The transport's answers to broken requests (issue 9 item 9): a JSON
// error with the right status that neither echoes the request nor names
// the HTTP library, within a second, whatever the line endings.
func TestTransportNits(t *testing.T) {
	s := start(t, serverConfig{})
	// secret stands for a cookie or token of the request: it must not come
	// back in an error.
	const secret = "cookie-7f3a9c-secret"
	big := strings.Repeat("a", 20<<10)
	cases := []struct {
		id, name string
		req      string
		// want is the status; "" accepts any answer, or a close.
		want string
	}{
		{"bad-content-length", "malformed: bad Content-Length",
			"GET /v2/health/live HTTP/1.1\r\nHost: a\r\nCookie: " + secret + "\r\nContent-Length: -5\r\n\r\n", "400"},
		{"no-colon", "malformed: header line without a colon",
			"GET /v2/health/live HTTP/1.1\r\nHost: a\r\nCookie: " + secret + "\r\nNoColonHere\r\n\r\n", "400"},
		{"bad-transfer-encoding", "malformed: unknown Transfer-Encoding",
			"POST /v2/models/tiny/infer HTTP/1.1\r\nHost: a\r\nCookie: " + secret + "\r\nTransfer-Encoding: zork\r\n\r\n", "400"},
		{"header-20k", "20 KB header",
			"GET /v2/health/live HTTP/1.1\r\nHost: a\r\nCookie: " + secret + "\r\nX-Big: " + big + "\r\n\r\n", "431"},
		{"url-20k", "20 KB URL",
			"GET /v2/health/live?x=" + big + " HTTP/1.1\r\nHost: a\r\nCookie: " + secret + "\r\n\r\n", "414"},
		// Bare LF: served or refused, but never left waiting for the read
		// timeout.
		{"bare-lf", "bare-LF line endings",
			"GET /v2/health/live HTTP/1.1\nHost: a\nCookie: " + secret + "\n\n", ""},
	}
	for _, c := range cases {
		t.Run(c.id, func(t *testing.T) {
			v := &verdict{t: t}
			conn, err := dial(context.Background(), "127.0.0.1", s.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			begin := time.Now()
			conn.Write([]byte(c.req)) // an early refusal may cut the write short
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			status, raw, err := readRaw(conn)
			took := time.Since(begin)
			switch {
			case status != "":
			case errors.Is(err, errTimeout):
				status = "no answer in 5s"
			default:
				status = "closed"
			}
			t.Logf("%s: %s after %s\n%s", c.name, status, took.Round(time.Millisecond), trim(raw, 600))
			v.check(took <= time.Second, "answered or closed within 1 s", "9", "%s after %s", status, took.Round(time.Millisecond))
			if c.want != "" {
				v.check(status == c.want, "status "+c.want, "9", "got %s", status)
			}
			// The failures quote the answer's start; the log above has it all.
			_, body, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
			head := strconv.Quote(trim(body, 160))
			if len(status) == 3 && status[0] == '4' {
				v.check(bytes.Contains(raw, []byte("\r\nContent-Type: application/json")), "JSON error", "9", "the %s is not application/json: %s", status, head)
			}
			v.check(!bytes.Contains(raw, []byte(secret)) && !bytes.Contains(raw, []byte("aaaaaaaaaaaaaaaa")) && !bytes.Contains(raw, []byte("/v2/health/live")),
				"no echo of the request", "9", "the answer repeats the request: %s", head)
			v.check(!bytes.Contains(bytes.ToLower(raw), []byte("fasthttp")), "no HTTP library named", "9", "the answer names fasthttp: %s", head)
			v.row(c.name, status, "-", took)
		})
	}
}

var errTimeout = errors.New("timeout")

// readRaw reads one response: its status and its raw bytes (headers and
// body), or the error that ended the read.
func readRaw(conn net.Conn) (string, []byte, error) {
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "", nil, errTimeout
		}
		return "", nil, err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	raw, _ := httputil.DumpResponse(resp, true)
	return strconv.Itoa(resp.StatusCode), raw, nil
}

func trim(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

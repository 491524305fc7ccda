package attack

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// client returns an HTTP client whose connections come from the loopback
// address ip (127.0.0.0/8 is all local on Linux), a new connection per
// request, each bounded by timeout.
func client(ip string, timeout time.Duration) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext:        d.DialContext,
			DisableKeepAlives:  true,
			DisableCompression: true,
		},
	}
}

// dial opens a raw connection from the loopback address ip.
func dial(ctx context.Context, ip, addr string) (net.Conn, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return d.DialContext(ctx, "tcp", addr)
}

// outcome names how a request ended: its status code ("413"), with what
// is wrong about the answer appended ("503 without Retry-After", "400 not
// JSON"); "closed" when the connection ended without an answer;
// "timeout" when none came in time.
func outcome(resp *http.Response, err error) string {
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "timeout"
		}
		return "closed"
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	code := strconv.Itoa(resp.StatusCode)
	if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
		code += " without Retry-After"
	}
	if resp.StatusCode >= 400 && !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		code += " not JSON"
	}
	return code
}

// get GETs url and returns its outcome.
func get(c *http.Client, url string) string {
	return outcome(c.Get(url))
}

// post POSTs body to url with the headers given as name, value pairs.
func post(ctx context.Context, c *http.Client, url string, body []byte, headers ...string) string {
	return send(ctx, c, "POST", url, body, headers...)
}

func send(ctx context.Context, c *http.Client, method, url string, body []byte, headers ...string) string {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return "bad request: " + err.Error()
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return outcome(c.Do(req))
}

// rawOutcome reads one response from a raw connection, waiting up to d.
func rawOutcome(conn net.Conn, d time.Duration) string {
	conn.SetReadDeadline(time.Now().Add(d))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "open"
		}
		return "closed"
	}
	return outcome(resp, nil)
}

// tally counts outcomes.
type tally struct {
	mu sync.Mutex
	m  map[string]int
}

func (t *tally) add(k string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]int{}
	}
	t.m[k]++
}

func (t *tally) count(k string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[k]
}

func (t *tally) total() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, v := range t.m {
		n += v
	}
	return n
}

// outside returns the outcomes that ok refuses, with their counts.
func (t *tally) outside(ok func(string) bool) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var bad []string
	for k, v := range t.m {
		if !ok(k) {
			bad = append(bad, fmt.Sprintf("%s ×%d", k, v))
		}
	}
	slices.Sort(bad)
	return strings.Join(bad, ", ")
}

// String lists the outcomes as "200 ×3, 413 ×16".
func (t *tally) String() string {
	s := t.outside(func(string) bool { return false })
	if s == "" {
		return "none"
	}
	return s
}

// oneOf accepts exactly the outcomes listed.
func oneOf(codes ...string) func(string) bool {
	return func(k string) bool { return slices.Contains(codes, k) }
}

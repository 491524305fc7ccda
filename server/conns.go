package server

import (
	"errors"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// reserveConns are the connections accepted beyond server.max_connections
// or a client's max_connections_per_client that serve only health checks
// and metrics, one request each: a replica whose connection slots are all
// taken still answers its load balancer's health check and Prometheus's
// scrape, instead of being dropped as dead.
const reserveConns = 32

// reservePerClient is how many reserve connections one client address may
// hold at once.
const reservePerClient = 2

// reserveLifetime bounds a reserve connection, so that clients that park on
// the reserve (a request that never ends) free it soon.
const reserveLifetime = 2 * time.Second

// rejectWriteTimeout bounds writing the refusal to a connection over a
// limit, so that a client that does not read cannot stall the accept loop.
const rejectWriteTimeout = 100 * time.Millisecond

// connLimiter wraps a listener with the connection limits: at most
// perClient connections from one client address, at most max in all, and
// reserveConns more over either limit that serve only health and metrics
// (see Server.handle) for at most reserveLifetime. A connection over a
// limit when the reserve is taken gets a one-line JSON answer and is
// closed, without reaching fasthttp.
type connLimiter struct {
	net.Listener
	max, perClient int

	mu       sync.Mutex
	total    int // connections open, reserve ones included
	reserved int // reserve connections open
	byClient map[netip.Addr]int
	// reservedBy counts reserve connections per client: a few each, so
	// that one client cannot take the reserve its load balancer needs.
	reservedBy map[netip.Addr]int

	onReject func(reason string)
}

func newConnLimiter(ln net.Listener, max, perClient int, onReject func(string)) *connLimiter {
	return &connLimiter{Listener: ln, max: max, perClient: perClient, byClient: map[netip.Addr]int{}, reservedBy: map[netip.Addr]int{}, onReject: onReject}
}

// Accept returns the next connection within the limits.
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		addr := clientAddr(c)
		l.mu.Lock()
		// Over a limit, a connection may still take a reserve slot: health
		// checks and scrapes come from the same addresses as the traffic
		// (a load balancer's), and must be answered when it is at its cap.
		over := (l.perClient > 0 && l.byClient[addr] >= l.perClient) || (l.max > 0 && l.total >= l.max)
		if over && (l.reserved >= reserveConns || l.reservedBy[addr] >= reservePerClient) {
			perClient := l.perClient > 0 && l.byClient[addr] >= l.perClient
			l.mu.Unlock()
			if perClient {
				l.reject(c, "429 Too Many Requests", "per_client", `{"error":"too many connections from your address (server.max_connections_per_client): close idle ones or reuse them"}`)
			} else {
				l.reject(c, "503 Service Unavailable", "max", `{"error":"server at server.max_connections: retry shortly"}`)
			}
			continue
		}
		l.total++
		l.byClient[addr]++
		lc := &limitedConn{Conn: c, l: l, addr: addr}
		if over {
			l.reserved++
			l.reservedBy[addr]++
			lc.reserve = true
			lc.until = time.Now().Add(reserveLifetime)
			c.SetDeadline(lc.until)
		}
		l.mu.Unlock()
		return lc, nil
	}
}

func (l *connLimiter) reject(c net.Conn, status, reason, body string) {
	if l.onReject != nil {
		l.onReject(reason)
	}
	go func() {
		c.SetWriteDeadline(time.Now().Add(rejectWriteTimeout))
		c.Write([]byte("HTTP/1.1 " + status + "\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: " +
			strconv.Itoa(len(body)) + "\r\n\r\n" + body))
		c.Close()
	}()
}

func (l *connLimiter) release(addr netip.Addr, reserve bool) {
	l.mu.Lock()
	l.total--
	if reserve {
		l.reserved--
		if n := l.reservedBy[addr] - 1; n > 0 {
			l.reservedBy[addr] = n
		} else {
			delete(l.reservedBy, addr)
		}
	}
	if n := l.byClient[addr] - 1; n > 0 {
		l.byClient[addr] = n
	} else {
		delete(l.byClient, addr)
	}
	l.mu.Unlock()
}

// clientAddr is the connection's remote IP address (IPv4-mapped IPv6
// addresses unmapped); the zero Addr for non-IP connections, which then
// share one count.
func clientAddr(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		if a, ok := netip.AddrFromSlice(ta.IP); ok {
			return a.Unmap()
		}
	}
	return netip.Addr{}
}

// limitedConn is a connection counted by a connLimiter until it closes.
type limitedConn struct {
	net.Conn
	l       *connLimiter
	addr    netip.Addr
	reserve bool      // accepted beyond a limit: health and metrics only
	until   time.Time // a reserve connection's end, whatever fasthttp asks
	once    sync.Once
	// lines counts the line feeds of the first request's head: a head that
	// overflows the read buffer before its first one has a URL too long
	// (414) rather than headers too large (431).
	lines int
	// headDone is set once the first request's head has ended (CRLF CRLF);
	// until then last holds its last bytes read.
	headDone bool
	last     [3]byte
	// encrypted: the bytes read are TLS records, whose head tlsConn scans
	// once decrypted.
	encrypted bool
}

// inFirstLine reports whether the connection is still reading the request
// line of its first request.
func (c *limitedConn) inFirstLine() bool { return c.lines == 0 }

// SetReadDeadline keeps a reserve connection's deadline: fasthttp sets one
// per request from read_timeout, which would let a client park on a
// reserve slot.
func (c *limitedConn) SetReadDeadline(t time.Time) error {
	if c.reserve && (t.IsZero() || t.After(c.until)) {
		t = c.until
	}
	return c.Conn.SetReadDeadline(t)
}

// SetDeadline is SetReadDeadline for both directions.
func (c *limitedConn) SetDeadline(t time.Time) error {
	if c.reserve && (t.IsZero() || t.After(c.until)) {
		t = c.until
	}
	return c.Conn.SetDeadline(t)
}

// errBareLF fails the read of a request head with a line feed that no
// carriage return precedes: fasthttp would wait for a CRLF CRLF that never
// comes until the read timeout. RFC 9112 lets a server reject it.
var errBareLF = errors.New("bare LF in the request head")

func (c *limitedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if !c.headDone && !c.encrypted && n > 0 && c.scanHead(p[:n]) {
		return 0, errBareLF
	}
	return n, err
}

// scanHead follows the first request's head through b and reports a bare
// LF in it. Only the first head is checked: later requests on the
// connection cannot be told from body bytes here.
func (c *limitedConn) scanHead(b []byte) (bare bool) {
	for _, ch := range b {
		if ch == '\n' {
			c.lines++
			if c.last[2] != '\r' {
				return true
			}
			if c.last[0] == '\r' && c.last[1] == '\n' {
				c.headDone = true
				return false
			}
		}
		c.last[0], c.last[1], c.last[2] = c.last[1], c.last[2], ch
	}
	return false
}

func (c *limitedConn) Close() error {
	c.once.Do(func() { c.l.release(c.addr, c.reserve) })
	return c.Conn.Close()
}

package server

import (
	"crypto/tls"
	"net"
)

// tlsListener serves TLS on the connections a connLimiter accepts. The
// limits wrap the TCP listener, not the TLS one, so they count TCP
// connections before any handshake: a client that opens many and
// completes no handshake is held to max_connections_per_client like any
// other, and costs no handshake beyond it. The handshake runs in the
// connection's own goroutine on its first read (never in the accept loop),
// under the deadline fasthttp sets for the first request
// (server.read_timeout), which a reserve connection caps at 2 s: a client
// that never completes it is dropped by then.
type tlsListener struct {
	*connLimiter
	config *tls.Config
}

func (l *tlsListener) Accept() (net.Conn, error) {
	c, err := l.connLimiter.Accept()
	if err != nil {
		return nil, err
	}
	lc := c.(*limitedConn)
	lc.encrypted = true // the head is scanned in plaintext, by tlsConn
	return &tlsConn{Conn: tls.Server(lc, l.config), lc: lc}, nil
}

// tlsConn is a TLS connection over a limitedConn; it scans the first
// request's head as limitedConn does for plain HTTP (a bare LF fails it,
// the first line is told from the headers), on the decrypted bytes.
type tlsConn struct {
	*tls.Conn
	lc *limitedConn
}

func (c *tlsConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if !c.lc.headDone && n > 0 && c.lc.scanHead(p[:n]) {
		return 0, errBareLF
	}
	return n, err
}

// limited returns the limitedConn under a connection fasthttp serves, nil
// for another kind (an in-memory listener's, in tests).
func limited(c net.Conn) *limitedConn {
	switch c := c.(type) {
	case *limitedConn:
		return c
	case *tlsConn:
		return c.lc
	}
	return nil
}

package server

import (
	"net"
	"net/netip"
	"sync"
)

// grpcConnLimiter holds the gRPC listener to HTTP's connection limits:
// at most max connections, at most perClient from one client address
// (0: no limit). gRPC multiplexes calls on a connection, so a client needs
// few; one over a limit is closed at accept, counted in
// inferd_http_connections_rejected_total as HTTP's are, and has no reserve
// (grpc.health.v1 is served on connections within the limits). The counts
// are the gRPC listener's own, apart from HTTP's.
type grpcConnLimiter struct {
	net.Listener
	max, perClient int
	onReject       func(reason string)

	mu       sync.Mutex
	total    int
	byClient map[netip.Addr]int
}

func newGRPCConnLimiter(ln net.Listener, max, perClient int, onReject func(string)) *grpcConnLimiter {
	return &grpcConnLimiter{Listener: ln, max: max, perClient: perClient, onReject: onReject, byClient: map[netip.Addr]int{}}
}

// Accept returns the next connection within the limits.
func (l *grpcConnLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		addr := clientAddr(c)
		l.mu.Lock()
		reason := ""
		switch {
		case l.perClient > 0 && l.byClient[addr] >= l.perClient:
			reason = "per_client"
		case l.max > 0 && l.total >= l.max:
			reason = "max"
		default:
			l.total++
			l.byClient[addr]++
		}
		l.mu.Unlock()
		if reason != "" {
			l.onReject(reason)
			c.Close()
			continue
		}
		return &grpcConn{Conn: c, l: l, addr: addr}, nil
	}
}

func (l *grpcConnLimiter) release(addr netip.Addr) {
	l.mu.Lock()
	l.total--
	if n := l.byClient[addr] - 1; n > 0 {
		l.byClient[addr] = n
	} else {
		delete(l.byClient, addr)
	}
	l.mu.Unlock()
}

// grpcConn gives its slot back when it closes, once.
type grpcConn struct {
	net.Conn
	l     *grpcConnLimiter
	addr  netip.Addr
	close sync.Once
}

func (c *grpcConn) Close() error {
	err := c.Conn.Close()
	c.close.Do(func() { c.l.release(c.addr) })
	return err
}

//go:build linux

package milter

import (
	"net"
	"syscall"
)

// withQuickAck returns a TCP connection that asks the kernel to acknowledge
// at once what the MTA sends next, after every read and every write on it.
//
// Why: with the no-reply flags (SMFIP_NR_HDR, NR_BODY, ...) the MTA writes
// the headers, the body and end of message as separate packets and waits
// only for the reply to end of message. Postfix leaves Nagle's algorithm on
// for its milter connections, so each of those small writes after the first
// waits in Postfix until the milter's kernel acknowledges the previous one;
// and Linux delays that acknowledgement (up to 40 ms) hoping to send it
// with a reply that, by the milter's own request, never comes. One such
// stall per message made a single Postfix session 20 times slower than with
// a milter that replies to every step (22 against 411 messages/s, make
// bench-postfix BENCH_ARGS=-postfix.sessions=1). TCP_QUICKACK is not sticky:
// the kernel falls back to delayed acknowledgements when the milter writes a
// reply, so it is set again after every read and write. Other connections
// (unix sockets, which have no Nagle) are returned as they are.
func withQuickAck(conn net.Conn) net.Conn {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return conn
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return conn
	}
	c := &quickAckConn{TCPConn: tc, raw: raw}
	c.arm()
	return c
}

// quickAckConn is a TCP milter connection that re-arms TCP_QUICKACK after
// every read and write (withQuickAck).
type quickAckConn struct {
	*net.TCPConn
	raw syscall.RawConn
}

// Read implements net.Conn.
func (c *quickAckConn) Read(p []byte) (int, error) {
	n, err := c.TCPConn.Read(p)
	if n > 0 {
		c.arm()
	}
	return n, err
}

// Write implements net.Conn.
func (c *quickAckConn) Write(p []byte) (int, error) {
	n, err := c.TCPConn.Write(p)
	if n > 0 {
		c.arm()
	}
	return n, err
}

// arm sets TCP_QUICKACK. A failure only costs the delay it avoids, so it
// is ignored.
func (c *quickAckConn) arm() {
	_ = c.raw.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}

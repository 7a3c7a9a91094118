//go:build linux

package milter

import (
	"net"
	"syscall"
	"testing"
)

// quickAck reads TCP_QUICKACK of a connection's socket: 1 while the kernel
// acknowledges at once, 0 once it delays acknowledgements again.
func quickAck(t *testing.T, c *net.TCPConn) int {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	v := -1
	var serr error
	if err := raw.Control(func(fd uintptr) {
		v, serr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK)
	}); err != nil || serr != nil {
		t.Fatalf("getsockopt TCP_QUICKACK: %v %v", err, serr)
	}
	return v
}

// TestQuickAckRearmedAfterReadAndWrite: the milter's TCP connections ask
// for immediate acknowledgements again after each read and each write,
// whereas a plain connection falls back to delayed ones once it has
// replied (the kernel's "ping-pong" mode), which stalled Postfix's
// no-reply packets behind Nagle's algorithm (quickack_linux.go).
func TestQuickAckRearmedAfterReadAndWrite(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	accepted, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer accepted.Close()
	plain := accepted.(*net.TCPConn)
	wrapped := withQuickAck(accepted)
	if _, ok := wrapped.(*quickAckConn); !ok {
		t.Fatalf("withQuickAck(%T) = %T, want *quickAckConn", accepted, wrapped)
	}
	buf := make([]byte, 64)
	exchange := func(c net.Conn) {
		t.Helper()
		// as a session does: read the MTA's command, write the reply
		if _, err := client.Write([]byte("command")); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("reply")); err != nil {
			t.Fatal(err)
		}
		if _, err := client.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	// Without the wrapper the kernel delays acknowledgements after a reply
	// (on the kernels seen here; one that does not still has the wrapper's
	// part checked below).
	exchange(plain)
	if got := quickAck(t, plain); got != 0 {
		t.Logf("this kernel reports TCP_QUICKACK %d after a reply on a plain connection: the wrapper's effect is not visible on it, only its setting", got)
	}
	for i := range 3 {
		exchange(wrapped)
		if got := quickAck(t, plain); got != 1 {
			t.Fatalf("exchange %d through the wrapper: TCP_QUICKACK = %d, want 1", i, got)
		}
	}
	if unix := withQuickAck(&net.UnixConn{}); unix == nil {
		t.Fatal("a unix connection must be returned as it is")
	} else if _, ok := unix.(*quickAckConn); ok {
		t.Fatal("a unix connection was wrapped")
	}
}

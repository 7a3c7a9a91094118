//go:build !linux

package milter

import "net"

// withQuickAck returns conn as it is: TCP_QUICKACK is Linux's (see
// quickack_linux.go for why the milter wants it there).
func withQuickAck(conn net.Conn) net.Conn { return conn }

package loadgen

import (
	"fmt"
	"strings"
)

// Target is the address of a milter, in the network/address form of
// net.Dial.
type Target struct {
	Network string // "tcp" or "unix"
	Address string // "host:port" or a socket path
}

// ParseTarget reads a milter address in Postfix's notation:
// "inet:HOST:PORT" (or "inet:[IPv6]:PORT") or "unix:/path/to/socket".
// "tcp:" is accepted as a synonym of "inet:".
func ParseTarget(s string) (Target, error) {
	kind, rest, ok := strings.Cut(s, ":")
	if !ok || rest == "" {
		return Target{}, fmt.Errorf("milter address %q: want inet:HOST:PORT or unix:/PATH", s)
	}
	switch kind {
	case "inet", "tcp":
		host, port, ok := cutLast(rest, ":")
		if !ok || host == "" || port == "" {
			return Target{}, fmt.Errorf("milter address %q: want inet:HOST:PORT", s)
		}
		if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
			host = "[" + host + "]"
		}
		return Target{Network: "tcp", Address: host + ":" + port}, nil
	case "unix", "local":
		return Target{Network: "unix", Address: rest}, nil
	default:
		return Target{}, fmt.Errorf("milter address %q: unknown kind %q, want inet or unix", s, kind)
	}
}

// String returns the target in Postfix's notation.
func (t Target) String() string {
	if t.Network == "unix" {
		return "unix:" + t.Address
	}
	return "inet:" + t.Address
}

func cutLast(s, sep string) (before, after string, found bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

// Package sdnotify speaks systemd's service notification protocol
// (sd_notify(3)) without linking libsystemd: state changes such as
// "READY=1" or "WATCHDOG=1" are sent as one datagram each to the unix
// socket named by $NOTIFY_SOCKET, a file system path or, with a leading
// "@", an abstract socket.
//
// Without $NOTIFY_SOCKET (not started by systemd, or a unit that is not
// Type=notify) FromEnv returns nil, and every method of a nil *Notifier
// does nothing: callers need no "under systemd?" branches. A failed send
// is logged, never fatal: the manager decides what a missing notification
// means (a start timeout, a watchdog restart).
//
// The environment is left alone: nothing is unset, so the process stays
// able to notify for its whole life. Children that must not inherit
// $NOTIFY_SOCKET get an environment of their own (the on-lock command
// already does), and a unit with NotifyAccess=main ignores them anyway.
package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Environment variables set by the service manager.
const (
	SocketEnv      = "NOTIFY_SOCKET"
	WatchdogUSEnv  = "WATCHDOG_USEC"
	WatchdogPIDEnv = "WATCHDOG_PID"
)

// Notifier sends notifications to one socket. It is safe for concurrent
// use; a nil *Notifier is valid and sends nothing.
type Notifier struct {
	addr *net.UnixAddr
	log  *zap.Logger

	mu sync.Mutex
	// lastErr is the error of the last send if it failed, so that a
	// socket that stays broken (e.g. every watchdog ping) is logged once
	// until a send succeeds again.
	lastErr string
}

// FromEnv returns a Notifier for $NOTIFY_SOCKET, or nil when it is unset
// or empty. An address that is neither a path nor an abstract name is
// logged once and also yields nil. log may be nil.
func FromEnv(log *zap.Logger) *Notifier {
	socket := os.Getenv(SocketEnv)
	if socket == "" {
		return nil
	}
	n, err := New(socket, log)
	if err != nil {
		if log != nil {
			log.Warn("systemd notification socket unusable, not notifying", zap.String("env", SocketEnv), zap.Error(err))
		}
		return nil
	}
	return n
}

// New returns a Notifier for socket, an absolute path or "@name" for an
// abstract socket. log (may be nil) receives send failures.
func New(socket string, log *zap.Logger) (*Notifier, error) {
	if !strings.HasPrefix(socket, "/") && !(strings.HasPrefix(socket, "@") && len(socket) > 1) {
		return nil, fmt.Errorf("notify socket %q: want an absolute path or @abstract-name", socket)
	}
	if log == nil {
		log = zap.NewNop()
	}
	// Go's net package maps a leading '@' to the abstract namespace.
	return &Notifier{addr: &net.UnixAddr{Name: socket, Net: "unixgram"}, log: log}, nil
}

// Socket returns the socket address notifications go to ("" for nil).
func (n *Notifier) Socket() string {
	if n == nil {
		return ""
	}
	return n.addr.Name
}

// Send sends one datagram made of the given "KEY=value" assignments, one
// per line. A failure is logged (consecutive identical failures once) and
// returned; callers may ignore it.
func (n *Notifier) Send(assignments ...string) error {
	if n == nil || len(assignments) == 0 {
		return nil
	}
	msg := strings.Join(assignments, "\n")
	err := n.send([]byte(msg))
	n.mu.Lock()
	defer n.mu.Unlock()
	if err == nil {
		n.lastErr = ""
		return nil
	}
	if err.Error() != n.lastErr {
		n.lastErr = err.Error()
		n.log.Warn("systemd notification failed", zap.String("socket", n.addr.Name),
			zap.String("state", strings.SplitN(msg, "\n", 2)[0]), zap.Error(err))
	}
	return err
}

// send dials a fresh socket per message, as sd_notify does: a socket the
// manager recreated (daemon-reexec) is found again at the next send.
func (n *Notifier) send(msg []byte) error {
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("notify socket %q: %w", n.addr.Name, err)
	}
	defer c.Close()
	if err := c.SetWriteDeadline(time.Now().Add(time.Second)); err != nil {
		return fmt.Errorf("notify socket %q: %w", n.addr.Name, err)
	}
	w, err := c.Write(msg)
	if err != nil {
		return fmt.Errorf("notify socket %q: sending %d bytes: %w", n.addr.Name, len(msg), err)
	}
	if w != len(msg) {
		return fmt.Errorf("notify socket %q: sent %d of %d bytes", n.addr.Name, w, len(msg))
	}
	return nil
}

// Ready tells the manager that start-up, or a reload, is complete
// (READY=1), with a status line for systemctl status.
func (n *Notifier) Ready(status string) error {
	return n.Send(withStatus(status, "READY=1")...)
}

// Reloading tells the manager that a configuration reload begins
// (RELOADING=1 with MONOTONIC_USEC, as systemd 253 and later require for
// Type=notify-reload); Ready must follow when it is done, whether or not
// it succeeded.
func (n *Notifier) Reloading(status string) error {
	if n == nil {
		return nil
	}
	usec, err := MonotonicUsec()
	if err != nil {
		n.log.Warn("systemd notification: no monotonic clock for RELOADING", zap.Error(err))
		return n.Send(withStatus(status, "RELOADING=1")...)
	}
	return n.Send(withStatus(status, "RELOADING=1", "MONOTONIC_USEC="+strconv.FormatUint(usec, 10))...)
}

// Stopping tells the manager that the service is shutting down
// (STOPPING=1).
func (n *Notifier) Stopping(status string) error {
	return n.Send(withStatus(status, "STOPPING=1")...)
}

// Status updates the status line only (STATUS=...).
func (n *Notifier) Status(status string) error {
	return n.Send(withStatus(status)...)
}

// Watchdog sends a keep-alive ping (WATCHDOG=1).
func (n *Notifier) Watchdog() error { return n.Send("WATCHDOG=1") }

// withStatus appends STATUS=status to states when status is not empty. A
// status is one line: newlines would start new assignments.
func withStatus(status string, states ...string) []string {
	if status == "" {
		return states
	}
	status = strings.Join(strings.Fields(status), " ")
	return append(states, "STATUS="+status)
}

// WatchdogInterval returns how often to send WATCHDOG=1: half of
// $WATCHDOG_USEC, as sd_watchdog_enabled(3) advises. ok is false when no
// watchdog is requested for this process: $WATCHDOG_USEC unset, or
// $WATCHDOG_PID set to another process (a parent that did not unset it).
// A malformed value is an error naming the variable and its value.
func WatchdogInterval() (interval time.Duration, ok bool, err error) {
	return watchdogInterval(os.Getenv(WatchdogUSEnv), os.Getenv(WatchdogPIDEnv), os.Getpid())
}

func watchdogInterval(usecEnv, pidEnv string, pid int) (time.Duration, bool, error) {
	if usecEnv == "" {
		return 0, false, nil
	}
	if pidEnv != "" {
		p, err := strconv.Atoi(pidEnv)
		if err != nil || p <= 0 {
			return 0, false, fmt.Errorf("%s=%q: not a process ID", WatchdogPIDEnv, pidEnv)
		}
		if p != pid {
			return 0, false, nil
		}
	}
	usec, err := strconv.ParseUint(usecEnv, 10, 63)
	if err != nil || usec == 0 {
		return 0, false, fmt.Errorf("%s=%q: not a positive number of microseconds", WatchdogUSEnv, usecEnv)
	}
	return time.Duration(usec) * time.Microsecond / 2, true, nil
}

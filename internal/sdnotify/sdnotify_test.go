package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// listen binds a unixgram socket as the service manager would and returns
// its NOTIFY_SOCKET spelling.
func listen(t *testing.T, name string) (*net.UnixConn, string) {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatalf("binding notify socket %q: %v", name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c, name
}

// pathSocket is a notify socket in the file system.
func pathSocket(t *testing.T) (*net.UnixConn, string) {
	return listen(t, filepath.Join(t.TempDir(), "notify"))
}

// abstractSocket is a notify socket in the abstract namespace.
func abstractSocket(t *testing.T) (*net.UnixConn, string) {
	return listen(t, fmt.Sprintf("@abusemilter-sdnotify-test-%d-%d", os.Getpid(), time.Now().UnixNano()))
}

// receive reads one datagram, failing the test after a deadline.
func receive(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	return string(buf[:n])
}

func TestFromEnvSendsToPathAndAbstractSockets(t *testing.T) {
	for name, bind := range map[string]func(*testing.T) (*net.UnixConn, string){"path": pathSocket, "abstract": abstractSocket} {
		t.Run(name, func(t *testing.T) {
			c, socket := bind(t)
			t.Setenv(SocketEnv, socket)
			n := FromEnv(nil)
			if n == nil {
				t.Fatalf("FromEnv with %s=%q returned nil", SocketEnv, socket)
			}
			if n.Socket() != socket {
				t.Errorf("Socket() = %q, want %q", n.Socket(), socket)
			}
			for _, tt := range []struct {
				send func() error
				want string
			}{
				{func() error { return n.Ready("serving on tcp:127.0.0.1:7357") }, "READY=1\nSTATUS=serving on tcp:127.0.0.1:7357"},
				{func() error { return n.Stopping("") }, "STOPPING=1"},
				{func() error { return n.Watchdog() }, "WATCHDOG=1"},
				{func() error { return n.Status("two\nlines") }, "STATUS=two lines"},
			} {
				if err := tt.send(); err != nil {
					t.Fatalf("send %q: %v", tt.want, err)
				}
				if got := receive(t, c); got != tt.want {
					t.Errorf("datagram %q, want %q", got, tt.want)
				}
			}
		})
	}
}

func TestReloadingCarriesMonotonicTime(t *testing.T) {
	c, socket := pathSocket(t)
	n, err := New(socket, nil)
	if err != nil {
		t.Fatal(err)
	}
	before, err := MonotonicUsec()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Reloading("reloading /etc/x.yaml"); err != nil {
		t.Fatal(err)
	}
	after, _ := MonotonicUsec()
	lines := strings.Split(receive(t, c), "\n")
	if len(lines) != 3 || lines[0] != "RELOADING=1" || lines[2] != "STATUS=reloading /etc/x.yaml" {
		t.Fatalf("datagram lines %q, want RELOADING=1, MONOTONIC_USEC=..., STATUS=...", lines)
	}
	v, ok := strings.CutPrefix(lines[1], "MONOTONIC_USEC=")
	usec, err := strconv.ParseUint(v, 10, 64)
	if !ok || err != nil {
		t.Fatalf("second line %q is not MONOTONIC_USEC=<number>", lines[1])
	}
	if usec < before || usec > after {
		t.Errorf("MONOTONIC_USEC=%d outside the clock readings around the call [%d, %d]", usec, before, after)
	}
}

func TestWithoutSocketNothingIsSent(t *testing.T) {
	t.Setenv(SocketEnv, "")
	n := FromEnv(zap.NewNop())
	if n != nil {
		t.Fatalf("FromEnv without %s = %+v, want nil", SocketEnv, n)
	}
	for _, err := range []error{n.Ready("x"), n.Reloading("x"), n.Stopping("x"), n.Watchdog(), n.Status("x"), n.Send("A=1")} {
		if err != nil {
			t.Errorf("nil Notifier returned %v", err)
		}
	}
}

func TestFromEnvRefusesRelativeSocket(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	t.Setenv(SocketEnv, "run/notify")
	if n := FromEnv(zap.New(core)); n != nil {
		t.Fatalf("FromEnv with a relative path = %+v, want nil", n)
	}
	if all := logs.All(); len(all) != 1 || !strings.Contains(fmt.Sprint(all[0].ContextMap()["error"]), `"run/notify"`) {
		t.Errorf("want one log line naming the socket, got %+v", all)
	}
	for _, bad := range []string{"", "@", "vsock:2:1234"} {
		if _, err := New(bad, nil); err == nil {
			t.Errorf("New(%q) accepted", bad)
		}
	}
}

// A socket nobody listens on: every send fails and returns the error, the
// log gets one line per run of identical failures, not one per ping.
func TestSendFailureIsLoggedOnceAndNotFatal(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "notify")
	core, logs := observer.New(zap.DebugLevel)
	n, err := New(socket, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		err := n.Watchdog()
		if err == nil || !strings.Contains(err.Error(), socket) || !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("send to a missing socket: %v, want an ENOENT error naming %s", err, socket)
		}
	}
	if got := logs.FilterMessage("systemd notification failed").Len(); got != 1 {
		t.Fatalf("%d log lines for 3 identical failures, want 1: %+v", got, logs.All())
	}
	line := logs.All()[0].ContextMap()
	if line["socket"] != socket || line["state"] != "WATCHDOG=1" {
		t.Errorf("log line fields %v, want the socket and the state", line)
	}

	// The manager's socket appears: sends succeed, and a later failure is
	// logged again.
	c, _ := listen(t, socket)
	if err := n.Ready("up"); err != nil {
		t.Fatalf("send after the socket appeared: %v", err)
	}
	if got := receive(t, c); got != "READY=1\nSTATUS=up" {
		t.Errorf("datagram %q", got)
	}
	c.Close()
	os.Remove(socket)
	if err := n.Watchdog(); err == nil {
		t.Fatal("send to a removed socket succeeded")
	}
	if got := logs.FilterMessage("systemd notification failed").Len(); got != 2 {
		t.Errorf("%d failure lines after fail, success, fail; want 2", got)
	}
}

func TestWatchdogInterval(t *testing.T) {
	const pid = 4242
	for _, tt := range []struct {
		usec, pidEnv string
		want         time.Duration
		ok, err      bool
	}{
		{"", "", 0, false, false},
		{"", "4242", 0, false, false},
		{"30000000", "", 15 * time.Second, true, false},
		{"200000", "4242", 100 * time.Millisecond, true, false},
		{"200000", "1", 0, false, false}, // meant for another process
		{"soon", "", 0, false, true},
		{"0", "", 0, false, true},
		{"200000", "me", 0, false, true},
	} {
		got, ok, err := watchdogInterval(tt.usec, tt.pidEnv, pid)
		if got != tt.want || ok != tt.ok || (err != nil) != tt.err {
			t.Errorf("watchdogInterval(%q, %q) = %v, %v, %v; want %v, %v, error %v", tt.usec, tt.pidEnv, got, ok, err, tt.want, tt.ok, tt.err)
		}
		if err != nil && !strings.Contains(err.Error(), "WATCHDOG_") {
			t.Errorf("error %q does not name the variable", err)
		}
	}
	t.Setenv(WatchdogUSEnv, "500000")
	t.Setenv(WatchdogPIDEnv, strconv.Itoa(os.Getpid()))
	if got, ok, err := WatchdogInterval(); got != 250*time.Millisecond || !ok || err != nil {
		t.Errorf("WatchdogInterval() from the environment = %v, %v, %v", got, ok, err)
	}
}

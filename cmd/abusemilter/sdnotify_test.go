package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/sdnotify"
)

// notifySocket plays systemd's side: a unixgram socket the daemon is told
// about in $NOTIFY_SOCKET.
type notifySocket struct {
	conn *net.UnixConn
	path string
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	// A short directory: a socket path must fit in 108 bytes.
	dir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatalf("binding %s: %v", path, err)
	}
	t.Cleanup(func() { c.Close() })
	return &notifySocket{conn: c, path: path}
}

// notification is one datagram: its assignments by key, and when it came.
type notification struct {
	vars map[string]string
	at   time.Time
	raw  string
}

// next returns the next datagram, or fails the test after timeout.
func (s *notifySocket) next(t *testing.T, timeout time.Duration) notification {
	t.Helper()
	if err := s.conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := s.conn.Read(buf)
	if err != nil {
		t.Fatalf("no notification within %s: %v", timeout, err)
	}
	nt := notification{vars: map[string]string{}, at: time.Now(), raw: string(buf[:n])}
	for _, line := range strings.Split(nt.raw, "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("notification line %q is not KEY=value (datagram %q)", line, nt.raw)
		}
		nt.vars[k] = v
	}
	return nt
}

// nextState skips watchdog pings and returns the next other datagram.
func (s *notifySocket) nextState(t *testing.T) notification {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		nt := s.next(t, time.Until(deadline))
		if nt.raw != "WATCHDOG=1" {
			return nt
		}
	}
}

// TestBinaryNotifiesSystemd runs the built daemon as systemd would run a
// Type=notify unit with WatchdogSec=200ms and checks every notification:
// READY=1 once the milter answers, WATCHDOG=1 every 100ms, RELOADING=1 and
// READY=1 around a reload (a good and a refused one), STOPPING=1 at
// SIGTERM.
func TestBinaryNotifiesSystemd(t *testing.T) {
	sock := listenNotify(t)
	cfg := writeConfig(t, t.TempDir(), daemonConfig)
	cmd := exec.Command(binary(t), "--log-format", "json", "--config", cfg)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NOTIFY_SOCKET=") && !strings.HasPrefix(kv, "WATCHDOG_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+sock.path, "WATCHDOG_USEC=200000")
	p := startCommand(t, cmd)

	// Nothing may come before READY=1, and READY=1 means the milter serves.
	ready := sock.next(t, 10*time.Second)
	if ready.vars["READY"] != "1" {
		t.Fatalf("first notification %q, want READY=1", ready.raw)
	}
	status := ready.vars["STATUS"]
	addr, ok := strings.CutPrefix(status, "serving milter on tcp:")
	addr, _, _ = strings.Cut(addr, ",")
	if !ok || !strings.Contains(status, "mode enforce") {
		t.Fatalf("READY status %q, want the milter address and the mode", status)
	}
	s := clientSession(t, addr) // negotiates: the milter is serving
	s.Close()
	if logged := milterAddr(t, p); logged != addr {
		t.Errorf("READY names %s, the log %s", addr, logged)
	}

	// Pings every WATCHDOG_USEC/2 = 100ms. A ticker keeps at most one
	// tick waiting, so on a busy machine two pings may come close
	// together, but five still span at least three intervals (300ms).
	var pings []time.Time
	for len(pings) < 5 {
		nt := sock.next(t, 5*time.Second)
		if nt.raw != "WATCHDOG=1" {
			t.Fatalf("notification %q while idle, want WATCHDOG=1", nt.raw)
		}
		pings = append(pings, nt.at)
	}
	if span := pings[4].Sub(pings[0]); span < 250*time.Millisecond {
		t.Errorf("5 pings within %s: not paced at WATCHDOG_USEC/2", span)
	}

	// A good reload: RELOADING=1 stamped with CLOCK_MONOTONIC, then READY=1.
	writeConfig(t, filepath.Dir(cfg), "mode: monitor\n"+daemonConfig)
	before, err := sdnotify.MonotonicUsec()
	if err != nil {
		t.Fatal(err)
	}
	p.signal(t, syscall.SIGHUP)
	reloading := sock.nextState(t)
	after, _ := sdnotify.MonotonicUsec()
	if reloading.vars["RELOADING"] != "1" {
		t.Fatalf("after SIGHUP: %q, want RELOADING=1", reloading.raw)
	}
	if usec, err := strconv.ParseUint(reloading.vars["MONOTONIC_USEC"], 10, 64); err != nil || usec < before || usec > after {
		t.Errorf("RELOADING MONOTONIC_USEC=%q, want a CLOCK_MONOTONIC µs value within [%d, %d]", reloading.vars["MONOTONIC_USEC"], before, after)
	}
	if !strings.Contains(reloading.vars["STATUS"], cfg) {
		t.Errorf("RELOADING status %q does not name %s", reloading.vars["STATUS"], cfg)
	}
	done := sock.nextState(t)
	if done.vars["READY"] != "1" || !strings.Contains(done.vars["STATUS"], "mode monitor") || strings.Contains(done.vars["STATUS"], "failed") {
		t.Fatalf("after a good reload: %q, want READY=1 with the new mode", done.raw)
	}
	p.waitLog(t, "config reloaded", 0)

	// A refused reload: READY=1 again (the old config serves), saying so.
	writeConfig(t, filepath.Dir(cfg), "mode: loud\n")
	p.signal(t, syscall.SIGHUP)
	if nt := sock.nextState(t); nt.vars["RELOADING"] != "1" {
		t.Fatalf("after the second SIGHUP: %q, want RELOADING=1", nt.raw)
	}
	done = sock.nextState(t)
	if done.vars["READY"] != "1" || !strings.Contains(done.vars["STATUS"], "reload failed, running config kept") ||
		!strings.Contains(done.vars["STATUS"], "mode monitor") {
		t.Fatalf("after a refused reload: %q, want READY=1 with a status saying the reload failed", done.raw)
	}

	// Still alive and pinging after the reloads.
	if nt := sock.next(t, 5*time.Second); nt.raw != "WATCHDOG=1" {
		t.Fatalf("after the reloads: %q, want WATCHDOG=1", nt.raw)
	}

	p.signal(t, syscall.SIGTERM)
	if nt := sock.nextState(t); nt.vars["STOPPING"] != "1" || !strings.HasPrefix(nt.vars["STATUS"], "stopping on SIGTERM") {
		t.Fatalf("after SIGTERM: %q, want STOPPING=1 and a status naming the signal", nt.raw)
	}
	if code := p.waitExit(t); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
}

// unitEnvironment returns the Environment= assignments of the shipped
// systemd unit.
func unitEnvironment(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile("../../configs/systemd/abusemilter.service")
	if err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Environment="); ok {
			env = append(env, strings.Fields(v)...)
		}
	}
	return env
}

// TestBinaryWatchdogAbortIsRestartable sends the daemon what systemd's
// watchdog sends on a missed ping (SIGABRT). With the unit's environment
// the process must die of the signal, after a stack dump, so that
// Restart=on-failure restarts it; plain Go would exit with status 2, which
// the unit's RestartPreventExitStatus=2 keeps down (checked too, so that
// this test would notice a unit that lost its Environment= line).
func TestBinaryWatchdogAbortIsRestartable(t *testing.T) {
	env := unitEnvironment(t)
	if len(env) == 0 {
		t.Fatal("the unit sets no Environment=; a watchdog abort would exit 2 and not be restarted")
	}
	for _, tt := range []struct {
		name string
		env  []string
	}{{"unit environment", env}, {"plain Go", []string{"GOTRACEBACK=single"}}} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := writeConfig(t, t.TempDir(), daemonConfig)
			// As LimitCORE=0 does: no core file from the test either.
			cmd := exec.Command("/bin/sh", "-c", `ulimit -c 0 && exec "$0" "$@"`, binary(t), "--log-format", "json", "--config", cfg)
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "GOTRACEBACK=") {
					cmd.Env = append(cmd.Env, kv)
				}
			}
			cmd.Env = append(cmd.Env, tt.env...)
			p := startCommand(t, cmd)
			milterAddr(t, p)
			p.signal(t, syscall.SIGABRT)
			p.waitExit(t)
			ws := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
			p.mu.Lock()
			out := strings.Join(p.raw, "\n")
			p.mu.Unlock()
			if !strings.Contains(out, "SIGABRT: abort") || !strings.Contains(out, "goroutine ") {
				t.Errorf("no stack dump on stderr:\n%s", out)
			}
			if tt.env[0] == "GOTRACEBACK=single" {
				if !ws.Exited() || ws.ExitStatus() != exitUsage {
					t.Errorf("plain Go after SIGABRT: %v; this test assumes exit status %d, the unit's RestartPreventExitStatus", p.cmd.ProcessState, exitUsage)
				}
				return
			}
			if !ws.Signaled() || ws.Signal() != syscall.SIGABRT {
				t.Errorf("with the unit's environment %q after SIGABRT: %v, want killed by SIGABRT (a restartable failure)", env, p.cmd.ProcessState)
			}
		})
	}
}

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/testutil/redistest"
	"github.com/abusemilter/abusemilter/internal/testutil/testenv"

	gomilter "github.com/emersion/go-milter"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds the daemon once per test run.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "abusemilter-test")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "abusemilter")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// proc is a running daemon whose JSON log lines are collected.
type proc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	lines  []map[string]any
	raw    []string
	exited chan error
}

func startDaemon(t *testing.T, args ...string) *proc {
	t.Helper()
	return startCommand(t, exec.Command(binary(t), append([]string{"--log-format", "json"}, args...)...))
}

// startCommand starts cmd (a daemon, possibly behind a wrapper that execs
// it) and collects its JSON log lines from stderr, as startDaemon does.
func startCommand(t *testing.T, cmd *exec.Cmd) *proc {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, exited: make(chan error, 1)}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var m map[string]any
			json.Unmarshal(sc.Bytes(), &m)
			p.mu.Lock()
			p.lines = append(p.lines, m)
			p.raw = append(p.raw, sc.Text())
			p.mu.Unlock()
		}
	}()
	go func() { <-scanned; p.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
		}
	})
	return p
}

// waitLog waits for a log line with the given message and returns it.
func (p *proc) waitLog(t *testing.T, msg string, after int) (map[string]any, int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		for i := after; i < len(p.lines); i++ {
			if p.lines[i]["msg"] == msg {
				line := p.lines[i]
				p.mu.Unlock()
				return line, i + 1
			}
		}
		p.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	t.Fatalf("no log line %q; log:\n%s", msg, strings.Join(p.raw, "\n"))
	return nil, 0
}

func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

func (p *proc) waitExit(t *testing.T) int {
	t.Helper()
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(10 * time.Second):
		t.Fatal("daemon did not exit")
		return -1
	}
}

// milterAddr starts a daemon and returns it with its TCP address.
func milterAddr(t *testing.T, p *proc) string {
	t.Helper()
	ready, _ := p.waitLog(t, "abusemilter ready", 0)
	listen, _ := ready["listen"].(string)
	addr, ok := strings.CutPrefix(listen, "tcp:")
	if !ok {
		t.Fatalf("ready line without a tcp address: %v", ready)
	}
	return addr
}

func clientSession(t *testing.T, addr string) *gomilter.ClientSession {
	t.Helper()
	return testenv.MilterSession(t, addr, 5*time.Second)
}

// act fails the test when a milter call fails and returns its action.
func act(t *testing.T, what string) func(*gomilter.Action, error) *gomilter.Action {
	return func(a *gomilter.Action, err error) *gomilter.Action {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return a
	}
}

// startMessage sends MAIL and n recipients for alice; it returns the last
// recipient's action.
func startMessage(t *testing.T, s *gomilter.ClientSession, n int) *gomilter.Action {
	t.Helper()
	act(t, "conn")(s.Conn("client.example.net", gomilter.FamilyInet, 40000, "192.0.2.10"))
	if err := s.Macros(gomilter.CodeMail, "{auth_authen}", "alice", "{auth_type}", "PLAIN"); err != nil {
		t.Fatal(err)
	}
	if a := act(t, "mail")(s.Mail("alice@example.com", nil)); a.Code != gomilter.ActContinue {
		t.Fatalf("mail: %q %d %s", a.Code, a.SMTPCode, a.SMTPText)
	}
	var last *gomilter.Action
	for i := range n {
		last = act(t, "rcpt")(s.Rcpt(fmt.Sprintf("r%d@example.org", i), nil))
	}
	return last
}

func endMessage(t *testing.T, s *gomilter.ClientSession) ([]gomilter.ModifyAction, *gomilter.Action) {
	t.Helper()
	act(t, "header")(s.HeaderField("From", "alice@example.com"))
	act(t, "eoh")(s.HeaderEnd())
	mods, a, err := s.BodyReadFrom(strings.NewReader("hello\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	return mods, a
}

const daemonConfig = `
listen: inet:127.0.0.1:0
session:
  shutdown_grace: 20s
identity:
  login_is_address: false
  accounts:
    alice:
      logins: [alice]
      send_as: [example.com]
limits:
  max_recipients_per_message: 2
dns:
  enabled: false
`

func TestBinarySIGTERMWaitsForMessage(t *testing.T) {
	cfg := writeConfig(t, t.TempDir(), daemonConfig)
	p := startDaemon(t, "--config", cfg)
	addr := milterAddr(t, p)
	s := clientSession(t, addr)
	startMessage(t, s, 1)
	p.signal(t, syscall.SIGTERM)
	_, next := p.waitLog(t, "stopping", 0)
	p.waitLog(t, "waiting for messages in progress", next)
	if _, a := endMessage(t, s); a.Code != gomilter.ActAccept {
		t.Fatalf("message in flight during SIGTERM: %q %d %s", a.Code, a.SMTPCode, a.SMTPText)
	}
	s.Abort()
	if code := p.waitExit(t); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}
	p.waitLog(t, "stopped", 0)
}

func TestBinarySIGHUPReload(t *testing.T) {
	cfg := writeConfig(t, t.TempDir(), daemonConfig)
	p := startDaemon(t, "--config", cfg)
	addr := milterAddr(t, p)

	s := clientSession(t, addr)
	if a := startMessage(t, s, 3); a.Code != gomilter.ActReplyCode || a.SMTPCode != 452 {
		t.Fatalf("3rd recipient under the cap of 2: %q %d", a.Code, a.SMTPCode)
	}
	s.Abort()

	// A changed config: monitor mode, a higher recipient cap.
	changed := strings.Replace(daemonConfig, "max_recipients_per_message: 2", "max_recipients_per_message: 5", 1)
	writeConfig(t, filepath.Dir(cfg), "mode: monitor\n"+changed)
	p.signal(t, syscall.SIGHUP)
	reloaded, next := p.waitLog(t, "config reloaded", 0)
	if reloaded["mode"] != "monitor" || reloaded["rate_counters_kept"] != true {
		t.Fatalf("reload line: %v", reloaded)
	}
	s = clientSession(t, addr)
	if a := startMessage(t, s, 3); a.Code != gomilter.ActContinue {
		t.Fatalf("3rd recipient after reload: %q %d %s", a.Code, a.SMTPCode, a.SMTPText)
	}
	mods, a := endMessage(t, s)
	if a.Code != gomilter.ActAccept || len(mods) == 0 || mods[0].HeaderName != "X-Abuse-Verdict" {
		t.Fatalf("monitor mode after reload: %q mods %+v", a.Code, mods)
	}
	s.Abort()

	// A broken config: every problem is logged, the running one stays.
	writeConfig(t, filepath.Dir(cfg), "mode: loud\nlimits:\n  max_recipients_per_message: 1\n  account_messages: [\"lots\"]\n")
	p.signal(t, syscall.SIGHUP)
	failed, _ := p.waitLog(t, "config reload failed, keeping the running config", next)
	problems, _ := failed["problems"].([]any)
	if len(problems) < 2 {
		t.Fatalf("reload failure should list every problem: %v", failed)
	}
	s = clientSession(t, addr)
	if a := startMessage(t, s, 3); a.Code != gomilter.ActContinue {
		t.Fatalf("after a broken reload the previous config (cap 5) must stay: %q %d", a.Code, a.SMTPCode)
	}
	_, a = endMessage(t, s)
	if a.Code != gomilter.ActAccept {
		t.Fatalf("end: %q", a.Code)
	}
	s.Abort()
	p.signal(t, syscall.SIGTERM)
	if code := p.waitExit(t); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

func TestBinaryRefusesNonLoopback(t *testing.T) {
	cfg := writeConfig(t, t.TempDir(), daemonConfig)
	p := startDaemon(t, "--config", cfg, "--listen", "inet:0.0.0.0:0")
	if code := p.waitExit(t); code != exitUsage {
		t.Fatalf("exit code %d, want %d", code, exitUsage)
	}
}

// TestBinaryReloadSwitchesStore reloads from the in-memory rate store to
// Redis and back: each reload builds a store of another type, and the
// daemon must keep serving (it used to panic storing the new type).
func TestBinaryReloadSwitchesStore(t *testing.T) {
	srv := redistest.Start(t)
	cfg := writeConfig(t, t.TempDir(), daemonConfig)
	p := startDaemon(t, "--config", cfg)
	addr := milterAddr(t, p)
	next := 0
	for _, body := range []string{daemonConfig + "redis:\n  url: redis://" + srv.Addr() + "/0\n", daemonConfig} {
		writeConfig(t, filepath.Dir(cfg), body)
		p.signal(t, syscall.SIGHUP)
		var reloaded map[string]any
		reloaded, next = p.waitLog(t, "config reloaded", next)
		if reloaded["rate_counters_kept"] != false {
			t.Fatalf("switching stores kept the counters? %v", reloaded)
		}
		s := clientSession(t, addr)
		startMessage(t, s, 1)
		if _, a := endMessage(t, s); a.Code != gomilter.ActAccept {
			t.Fatalf("after switching stores: %q %d %s", a.Code, a.SMTPCode, a.SMTPText)
		}
		s.Abort()
	}
	p.signal(t, syscall.SIGTERM)
	if code := p.waitExit(t); code != 0 {
		t.Fatalf("exit code %d after two store switches", code)
	}
}

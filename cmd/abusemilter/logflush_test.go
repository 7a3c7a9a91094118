package main

import (
	"fmt"
	"syscall"
	"testing"

	gomilter "github.com/emersion/go-milter"
)

// The daemon buffers its decision lines (logging.DefaultFlushInterval); a
// reload (SIGHUP) and a stop (SIGTERM) sent right after a burst of messages
// must lose none of them: every message's line is in the log when the
// process has exited, and the reload's line too.
func TestBinaryLogLinesSurviveSignals(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			cfg := writeConfig(t, t.TempDir(), daemonConfig)
			p := startDaemon(t, "--config", cfg)
			addr := milterAddr(t, p)
			const messages = 40
			s := clientSession(t, addr)
			for i := range messages {
				if i == 0 {
					act(t, "conn")(s.Conn("client.example.net", gomilter.FamilyInet, 40000, "192.0.2.10"))
				}
				if err := s.Macros(gomilter.CodeMail, "{auth_authen}", "alice", "{auth_type}", "PLAIN", "i", fmt.Sprintf("Q%04d", i)); err != nil {
					t.Fatal(err)
				}
				act(t, "mail")(s.Mail("alice@example.com", nil))
				act(t, "rcpt")(s.Rcpt("bob@example.org", nil))
				if _, a := endMessage(t, s); a.Code != gomilter.ActAccept {
					t.Fatalf("message %d: %q", i, a.Code)
				}
				if err := s.Abort(); err != nil {
					t.Fatal(err)
				}
			}
			p.mu.Lock()
			before := countMsg(p.lines, "decision")
			p.mu.Unlock()
			t.Logf("%d of %d decision lines written when the signal was sent", before, messages)
			p.signal(t, sig)
			if sig == syscall.SIGHUP {
				p.waitLog(t, "config reloaded", 0)
				p.signal(t, syscall.SIGTERM)
			}
			s.Close()
			if code := p.waitExit(t); code != 0 {
				t.Fatalf("exit code %d", code)
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			if n := countMsg(p.lines, "decision"); n != messages {
				t.Fatalf("%d decision lines after %s and exit, want %d", n, sig, messages)
			}
			seen := map[string]bool{}
			for _, l := range p.lines {
				if l["msg"] == "decision" {
					seen[fmt.Sprint(l["queue_id"])] = true
				}
			}
			for i := range messages {
				if id := fmt.Sprintf("Q%04d", i); !seen[id] {
					t.Fatalf("no decision line for %s", id)
				}
			}
			if countMsg(p.lines, "stopped") != 1 {
				t.Fatal("no \"stopped\" line: the last lines were lost")
			}
		})
	}
}

func countMsg(lines []map[string]any, msg string) int {
	n := 0
	for _, l := range lines {
		if l["msg"] == msg {
			n++
		}
	}
	return n
}

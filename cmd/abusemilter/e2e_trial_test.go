package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/abusemilter/abusemilter/internal/testutil/testenv"
)

// TestEndToEndPostfixGetsNoTrial shows that real mail, through a real
// Postfix, cannot get the trial treatment (decided but not charged):
//   - a Postfix pointed at the trial listener itself (a misconfiguration)
//     never sends the trial macro, so its mail is charged as usual: the
//     account's one message an hour goes through, the second is deferred,
//     and a client's own X-Abuse-Trial header changes nothing;
//   - a Postfix configured to send the trial macro (milter_connect_macros,
//     milter_macro_defaults) does not send it: the milter's own macro list
//     (SETSYMLIST) replaces Postfix's, and it never names the trial macro,
//     so the mail is decided and charged as real mail. (Were the macro sent
//     to the main listener, the session would be refused: milter tests.)
func TestEndToEndPostfixGetsNoTrial(t *testing.T) {
	testenv.RequireTool(t, "postfix")
	testenv.RequireTool(t, "swaks")
	testenv.RequireRoot(t, "Postfix's master starts as root")

	// Postfix's unprivileged smtpd must be able to reach the socket: a
	// directory of its own with mode 0755 (t.TempDir's parent is 0700).
	dir, err := os.MkdirTemp("", "abusemilter-trial-e2e")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "trial.sock")
	// The socket's mode lets Postfix's unprivileged smtpd connect: the
	// misconfiguration this test is about (the default, 0600, keeps it out).
	cfg := e2eConfig + "trial:\n  listen: unix:" + sock + "\n  socket_mode: \"0666\"\n"
	p := startDaemon(t, "--config", writeConfig(t, dir, cfg))
	addr := milterAddr(t, p)
	sink := testenv.StartSink(t)

	t.Run("Postfix on the trial listener is charged", func(t *testing.T) {
		pf := testenv.StartPostfix(t, testenv.PostfixOptions{SMTPDMilter: "unix:" + sock, RelayTo: sink.Addr()})
		send := func(subject string, extra ...string) testenv.SwaksResult {
			return testenv.Swaks(t, testenv.SwaksOptions{
				Server: pf.Addr(), From: "news@bulk.example", To: []string{"x@example.org"},
				XClientLogin: "bulk", XClientAddr: "203.0.113.10",
				Headers: append([]string{"From: news@bulk.example", "Subject: " + subject}, extra...),
			})
		}
		if res := send("e2e-trial-1"); res.ExitCode != testenv.SwaksOK {
			t.Fatalf("first message: swaks exit %d:\n%s\npostfix log:\n%s", res.ExitCode, res.Transcript, pf.Log())
		}
		res := send("e2e-trial-2", "X-Abuse-Trial: accept; mode=enforce")
		if !regexp.MustCompile(`^451 4\.7\.1 .*ACCOUNT_MSG_RATE 1/1h`).MatchString(res.EndOfDataReply()) {
			t.Fatalf("second message: %q, want 451 ACCOUNT_MSG_RATE (charged like any mail):\n%s", res.EndOfDataReply(), res.Transcript)
		}
		sink.WaitFor(t, e2eWait, "Subject e2e-trial-1", func(m testenv.SinkMessage) bool { return m.Header("Subject") == "e2e-trial-1" })
	})

	t.Run("Postfix configured to send the trial macro does not", func(t *testing.T) {
		pf := testenv.StartPostfix(t, testenv.PostfixOptions{
			SMTPDMilter: "inet:" + addr, RelayTo: sink.Addr(), MilterDefaultAction: "accept",
			ExtraMainCF: map[string]string{
				"milter_connect_macros": "j {daemon_name} v {abusemilter_trial}",
				"milter_macro_defaults": "{abusemilter_trial}=yes",
			},
		})
		res := testenv.Swaks(t, testenv.SwaksOptions{
			Server: pf.Addr(), From: "alice@example.com", To: []string{"bob@example.org"},
			XClientLogin: "alice", XClientAddr: "203.0.113.10",
			Headers: []string{"From: Chief Executive <ceo@other-company.example>", "Subject: e2e-trial-forged"},
		})
		if res.EndOfDataReply() != "550 5.7.1 Rejected under the e-mail abuse policy (impersonation: FROM_DOMAIN_NOT_OWNED)" {
			t.Fatalf("a forged message through a Postfix configured with the trial macro: %q, want the real 550:\n%s", res.EndOfDataReply(), res.Transcript)
		}
		p.waitDecision(t, "the forged message, as real mail", func(l map[string]any) bool {
			return l["stage"] == "eom" && l["rule"] == "FROM_DOMAIN_NOT_OWNED" && l["trial"] == nil
		})
	})

	// Every message's decision line was waited for above.
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.lines {
		if l["msg"] == "decision" && l["trial"] == true {
			t.Errorf("real mail got the trial treatment: %v", l)
		}
	}
	if t.Failed() {
		t.Logf("daemon log:\n%s", strings.Join(p.raw, "\n"))
	}
}

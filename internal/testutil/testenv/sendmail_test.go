package testenv

import (
	"slices"
	"sort"
	"strings"
	"testing"
)

// TestSendmailWithTestMilter runs Debian's Sendmail 8.17, configured from
// configs/sendmail/abusemilter.mc, against the in-test milter.
func TestSendmailWithTestMilter(t *testing.T) {
	tm := startTestMilter(t)
	sink := StartSink(t)
	sm := StartSendmail(t, SendmailOptions{
		MilterSocket: "inet:" + strings.TrimPrefix(tm.Addr(), "inet:127.0.0.1:") + "@127.0.0.1",
		RelayTo:      sink.Addr(),
	})

	t.Run("accepted mail reaches the sink", func(t *testing.T) {
		since := len(tm.Events())
		defer func() { logEvents(t, tm.Events()[since:]) }()
		res := Swaks(t, SwaksOptions{Server: sm.Addr(), From: "alice@example.com", To: []string{"bob@example.org"},
			Headers: []string{"Subject: sendmail-accepted"}})
		if res.ExitCode != SwaksOK {
			t.Fatalf("swaks exit %d, want 0:\n%s", res.ExitCode, res.Transcript)
		}
		msg := sink.WaitFor(t, waitTimeout, "Subject sendmail-accepted", func(m SinkMessage) bool {
			return m.Header("Subject") == "sendmail-accepted"
		})
		if msg.From != "alice@example.com" || !slices.Equal(msg.To, []string{"bob@example.org"}) {
			t.Errorf("sink envelope %q -> %q", msg.From, msg.To)
		}
		for _, stage := range []string{"mail", "rcpt", "eom"} {
			arg := "alice@example.com"
			if stage == "rcpt" {
				arg = "bob@example.org"
			}
			e := tm.waitEvent(t, stage, arg)
			if e.Macros["{client_addr}"] != "127.0.0.1" {
				t.Errorf("%s: {client_addr}=%q, want 127.0.0.1 (macros %v)", stage, e.Macros["{client_addr}"], e.Macros)
			}
		}
		if e := tm.waitEvent(t, "eom", "alice@example.com"); e.Macros["i"] == "" {
			t.Errorf("eom: no queue id macro i (macros %v)", e.Macros)
		}
	})

	t.Run("550 5.7.1 and 451 4.7.1 at end of data", func(t *testing.T) {
		for from, want := range map[string]string{"reject-me@example.com": testReplyReject, "defer-me@example.com": testReplyDefer} {
			res := Swaks(t, SwaksOptions{Server: sm.Addr(), From: from, To: []string{"bob@example.org"}})
			if res.ExitCode != SwaksMessageRefused {
				t.Errorf("%s: swaks exit %d, want %d:\n%s", from, res.ExitCode, SwaksMessageRefused, res.Transcript)
			}
			if got := res.EndOfDataReply(); got != want {
				t.Errorf("%s: end-of-data reply %q, want %q", from, got, want)
			}
		}
	})

	t.Run("452 4.5.3 for one recipient, the others delivered", func(t *testing.T) {
		res := Swaks(t, SwaksOptions{Server: sm.Addr(), From: "carol@example.com",
			To: []string{"one@example.org", "over@example.org", "two@example.org"}, Headers: []string{"Subject: sendmail-partial"}})
		if res.ExitCode != SwaksOK {
			t.Fatalf("swaks exit %d, want 0:\n%s", res.ExitCode, res.Transcript)
		}
		if rcpt := res.RepliesTo("RCPT TO:"); len(rcpt) != 3 || rcpt[1] != testReplyTooManyRcpts {
			t.Errorf("RCPT replies %q, want the second to be %q", rcpt, testReplyTooManyRcpts)
		}
		msg := sink.WaitFor(t, waitTimeout, "Subject sendmail-partial", func(m SinkMessage) bool {
			return m.Header("Subject") == "sendmail-partial"
		})
		got := append([]string(nil), msg.To...)
		sort.Strings(got)
		if !slices.Equal(got, []string{"one@example.org", "two@example.org"}) {
			t.Errorf("sink recipients %q, want one@ and two@", msg.To)
		}
	})
}

package testenv

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

const waitTimeout = 20 * time.Second

// TestPostfixWithTestMilter drives a real Postfix whose smtpd_milters and
// non_smtpd_milters both point at the in-test milter, and checks what SMTP
// clients, the sink and the milter each see.
func TestPostfixWithTestMilter(t *testing.T) {
	tm := startTestMilter(t)
	sink := StartSink(t)
	pf := StartPostfix(t, PostfixOptions{
		SMTPDMilter:    tm.Addr(),
		NonSMTPDMilter: tm.Addr(),
		RelayTo:        sink.Addr(),
	})

	t.Run("accepted mail reaches the sink", func(t *testing.T) {
		res := Swaks(t, SwaksOptions{
			Server:  pf.Addr(),
			From:    "alice@example.com",
			To:      []string{"bob@example.org"},
			Headers: []string{"Subject: accepted-1"},
			Body:    "hello bob\n",
		})
		if res.ExitCode != SwaksOK {
			t.Fatalf("swaks exit %d, want 0:\n%s", res.ExitCode, res.Transcript)
		}
		if r := res.EndOfDataReply(); !strings.HasPrefix(r, "250 2.0.0 Ok: queued as ") {
			t.Errorf("end-of-data reply %q, want 250 queued", r)
		}
		msg := sink.WaitFor(t, waitTimeout, "Subject accepted-1", func(m SinkMessage) bool {
			return m.Header("Subject") == "accepted-1"
		})
		if msg.From != "alice@example.com" || !slices.Equal(msg.To, []string{"bob@example.org"}) {
			t.Errorf("sink got envelope %q -> %q, want alice@example.com -> [bob@example.org]", msg.From, msg.To)
		}
		if !strings.Contains(string(msg.Data), "hello bob") {
			t.Errorf("sink message lacks the body:\n%s", msg.Data)
		}
		tm.waitEvent(t, "eom", "alice@example.com")
	})

	t.Run("550 5.7.1 at end of data", func(t *testing.T) {
		res := Swaks(t, SwaksOptions{Server: pf.Addr(), From: "reject-me@example.com", To: []string{"bob@example.org"}})
		if res.ExitCode != SwaksMessageRefused {
			t.Fatalf("swaks exit %d, want %d:\n%s", res.ExitCode, SwaksMessageRefused, res.Transcript)
		}
		if got := res.EndOfDataReply(); got != testReplyReject {
			t.Errorf("end-of-data reply %q, want %q", got, testReplyReject)
		}
		if errs := res.ErrorReplies(); !slices.Contains(errs, testReplyReject) {
			t.Errorf("error replies %q lack %q", errs, testReplyReject)
		}
		pf.WaitLog(t, regexp.MustCompile(`milter-reject: END-OF-MESSAGE .*5\.7\.1 Rejected by the test milter; from=<reject-me@example\.com>`), waitTimeout)
	})

	t.Run("451 4.7.1 at end of data", func(t *testing.T) {
		res := Swaks(t, SwaksOptions{Server: pf.Addr(), From: "defer-me@example.com", To: []string{"bob@example.org"}})
		if res.ExitCode != SwaksMessageRefused {
			t.Fatalf("swaks exit %d, want %d:\n%s", res.ExitCode, SwaksMessageRefused, res.Transcript)
		}
		if got := res.EndOfDataReply(); got != testReplyDefer {
			t.Errorf("end-of-data reply %q, want %q", got, testReplyDefer)
		}
	})

	t.Run("452 4.5.3 for one recipient, the others delivered", func(t *testing.T) {
		res := Swaks(t, SwaksOptions{
			Server:  pf.Addr(),
			From:    "carol@example.com",
			To:      []string{"one@example.org", "over@example.org", "two@example.org"},
			Headers: []string{"Subject: partial-1"},
		})
		if res.ExitCode != SwaksOK {
			t.Fatalf("swaks exit %d, want 0 (some recipients accepted):\n%s", res.ExitCode, res.Transcript)
		}
		rcpt := res.RepliesTo("RCPT TO:")
		if len(rcpt) != 3 || !strings.HasPrefix(rcpt[0], "250 ") || rcpt[1] != testReplyTooManyRcpts || !strings.HasPrefix(rcpt[2], "250 ") {
			t.Errorf("RCPT replies %q, want 250, %q, 250", rcpt, testReplyTooManyRcpts)
		}
		msg := sink.WaitFor(t, waitTimeout, "Subject partial-1", func(m SinkMessage) bool {
			return m.Header("Subject") == "partial-1"
		})
		got := append([]string(nil), msg.To...)
		sort.Strings(got)
		if !slices.Equal(got, []string{"one@example.org", "two@example.org"}) {
			t.Errorf("sink recipients %q, want one@ and two@ only", msg.To)
		}
	})

	t.Run("XCLIENT LOGIN reaches the milter as auth_authen", func(t *testing.T) {
		since := len(tm.Events())
		defer func() { logEvents(t, tm.Events()[since:]) }()
		res := Swaks(t, SwaksOptions{
			Server:       pf.Addr(),
			From:         "alice-login@example.com",
			To:           []string{"bob@example.org"},
			XClientLogin: "alice",
			XClientAddr:  "192.0.2.7",
		})
		if res.ExitCode != SwaksOK {
			t.Fatalf("swaks exit %d, want 0:\n%s", res.ExitCode, res.Transcript)
		}
		for _, stage := range []string{"mail", "eom"} {
			e := tm.waitEvent(t, stage, "alice-login@example.com")
			if e.Macros["{auth_authen}"] != "alice" || e.Macros["{client_addr}"] != "192.0.2.7" {
				t.Errorf("%s macros: auth_authen=%q client_addr=%q, want alice and 192.0.2.7 (all: %v)",
					stage, e.Macros["{auth_authen}"], e.Macros["{client_addr}"], e.Macros)
			}
			if e.Macros["{auth_type}"] != "XCLIENT" {
				t.Errorf("%s macros: auth_type=%q, want XCLIENT", stage, e.Macros["{auth_type}"])
			}
		}
	})

	t.Run("two messages on one connection keep the login", func(t *testing.T) {
		s := DialSMTP(t, pf.Addr(), "client.test")
		if r := s.XClient(t, "LOGIN=dave ADDR=198.51.100.9"); r.Code != 220 {
			t.Fatalf("XCLIENT reply %v, want 220", r)
		}
		for i := 1; i <= 2; i++ {
			from := fmt.Sprintf("dave-%d@example.com", i)
			res := s.Send(t, SMTPTransaction{
				From: from,
				To:   []string{"erin@example.org"},
				Data: fmt.Appendf(nil, "From: <%s>\nTo: <erin@example.org>\nSubject: same-conn-%d\n\nmessage %d\n", from, i, i),
			})
			if res.End.Code != 250 {
				t.Fatalf("message %d: replies %+v, want 250 at end of data", i, res)
			}
			e := tm.waitEvent(t, "mail", from)
			if e.Macros["{auth_authen}"] != "dave" || e.Macros["{client_addr}"] != "198.51.100.9" {
				t.Errorf("message %d mail macros: auth_authen=%q client_addr=%q, want dave and 198.51.100.9",
					i, e.Macros["{auth_authen}"], e.Macros["{client_addr}"])
			}
		}
		// A third transaction on the same connection, refused at end of data.
		res := s.Send(t, SMTPTransaction{From: "dave-reject@example.com", To: []string{"erin@example.org"}, Data: []byte("Subject: x\n\nx\n")})
		if res.End.String() != testReplyReject {
			t.Errorf("third message: end reply %q, want %q", res.End, testReplyReject)
		}
		for i := 1; i <= 2; i++ {
			subject := fmt.Sprintf("same-conn-%d", i)
			sink.WaitFor(t, waitTimeout, subject, func(m SinkMessage) bool { return m.Header("Subject") == subject })
		}
	})

	t.Run("sendmail command goes through non_smtpd_milters", func(t *testing.T) {
		since := len(tm.Events())
		defer func() { logEvents(t, tm.Events()[since:]) }()
		out, err := pf.Sendmail(t, "local-user@mta.test", []string{"frank@example.org"},
			[]byte("From: local-user@mta.test\nTo: frank@example.org\nSubject: via-sendmail\n\nfrom cron\n"))
		if err != nil {
			t.Fatalf("sendmail: %v\n%s", err, out)
		}
		msg := sink.WaitFor(t, waitTimeout, "Subject via-sendmail", func(m SinkMessage) bool {
			return m.Header("Subject") == "via-sendmail"
		})
		if msg.From != "local-user@mta.test" {
			t.Errorf("sink envelope sender %q, want local-user@mta.test", msg.From)
		}
		e := tm.waitEvent(t, "mail", "local-user@mta.test")
		if e.Macros["{client_addr}"] != "127.0.0.1" {
			t.Errorf("non-SMTP mail macros: client_addr=%q, want 127.0.0.1 (all: %v)", e.Macros["{client_addr}"], e.Macros)
		}
		if e.Macros["{auth_authen}"] != "" {
			t.Errorf("non-SMTP mail macros: auth_authen=%q, want none", e.Macros["{auth_authen}"])
		}
		tm.waitEvent(t, "eom", "local-user@mta.test")
	})

	t.Run("sendmail command rejected by the milter bounces", func(t *testing.T) {
		out, err := pf.Sendmail(t, "reject-local@mta.test", []string{"frank@example.org"},
			[]byte("Subject: rejected-via-sendmail\n\nx\n"))
		if err != nil {
			t.Fatalf("sendmail: %v\n%s", err, out)
		}
		bounce := sink.WaitFor(t, waitTimeout, "bounce to reject-local@mta.test", func(m SinkMessage) bool {
			return m.From == "" && slices.Equal(m.To, []string{"reject-local@mta.test"})
		})
		for _, want := range []string{"Status: 5.7.1", "Diagnostic-Code: X-Postfix; Rejected by the test milter"} {
			if !strings.Contains(string(bounce.Data), want) {
				t.Errorf("bounce lacks %q:\n%s", want, bounce.Data)
			}
		}
	})

	t.Run("refused messages never reached the sink", func(t *testing.T) {
		for _, m := range sink.Messages() {
			if strings.Contains(m.From, "reject") || strings.Contains(m.From, "defer") ||
				slices.Contains(m.To, "over@example.org") {
				t.Errorf("sink got a message that was refused: %q -> %q", m.From, m.To)
			}
		}
	})

	t.Run("macros per stage", func(t *testing.T) {
		seen := map[string]map[string]bool{}
		for _, e := range tm.Events() {
			if seen[e.Stage] == nil {
				seen[e.Stage] = map[string]bool{}
			}
			for k := range e.Macros {
				seen[e.Stage][k] = true
			}
		}
		for _, stage := range []string{"connect", "helo", "mail", "rcpt", "eoh", "eom"} {
			names := make([]string, 0, len(seen[stage]))
			for k := range seen[stage] {
				names = append(names, k)
			}
			sort.Strings(names)
			t.Logf("%-7s %s", stage, strings.Join(names, " "))
		}
		if !seen["mail"]["{client_addr}"] || !seen["eom"]["{client_addr}"] {
			t.Errorf("{client_addr} missing at mail or eom: %v", seen)
		}
	})
}

// logEvents logs milter events with their macro values (visible with -v):
// the record of what the MTA sends at each stage.
func logEvents(t *testing.T, events []milterEvent) {
	t.Helper()
	for _, e := range events {
		names := make([]string, 0, len(e.Macros))
		for k := range e.Macros {
			names = append(names, k)
		}
		sort.Strings(names)
		var b strings.Builder
		for _, k := range names {
			fmt.Fprintf(&b, " %s=%q", k, e.Macros[k])
		}
		t.Logf("%-7s %-24s%s", e.Stage, e.Arg, b.String())
	}
}

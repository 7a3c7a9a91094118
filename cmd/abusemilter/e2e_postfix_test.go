package main

import (
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/testutil/testenv"
)

// e2eConfig is the daemon's config behind the real Postfix: alice owns
// example.com, "bulk" may send one message an hour, and at most two
// recipients fit in one message.
const e2eConfig = `
listen: inet:127.0.0.1:0
dns:
  enabled: false
identity:
  accounts:
    alice:
      logins: [alice]
      send_as: [example.com]
    bulk:
      logins: [bulk]
      send_as: [bulk.example]
      limits:
        account_messages: [1/1h]
limits:
  max_recipients_per_message: 2
`

const e2eWait = 20 * time.Second

// TestEndToEndPostfix runs the built daemon behind a real Postfix on
// loopback ports and checks the replies an SMTP client sees, and that
// accepted mail reaches the next hop.
func TestEndToEndPostfix(t *testing.T) {
	testenv.RequireTool(t, "postfix")
	testenv.RequireTool(t, "swaks")
	testenv.RequireRoot(t, "Postfix's master starts as root")

	p := startDaemon(t, "--config", writeConfig(t, t.TempDir(), e2eConfig))
	addr := milterAddr(t, p)
	sink := testenv.StartSink(t)
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{
		SMTPDMilter:          "inet:" + addr,
		NonSMTPDMilter:       "inet:" + addr,
		MilterDefaultAction:  "tempfail",
		MilterCommandTimeout: 10 * time.Second,
		MilterContentTimeout: 20 * time.Second,
		RelayTo:              sink.Addr(),
	})

	send := func(t *testing.T, login, from, headerFrom, subject string, to ...string) testenv.SwaksResult {
		t.Helper()
		return testenv.Swaks(t, testenv.SwaksOptions{
			Server: pf.Addr(), From: from, To: to,
			XClientLogin: login, XClientAddr: "203.0.113.10",
			Headers: []string{"From: " + headerFrom, "Subject: " + subject},
			Body:    "Hello,\nthis is " + subject + ".\n",
		})
	}
	arrived := func(t *testing.T, subject string) testenv.SinkMessage {
		t.Helper()
		return sink.WaitFor(t, e2eWait, "Subject "+subject, func(m testenv.SinkMessage) bool {
			return m.Header("Subject") == subject
		})
	}

	t.Run("250: an authenticated customer's own mail is delivered", func(t *testing.T) {
		res := send(t, "alice", "alice@example.com", "Alice <alice@example.com>", "e2e-accept", "bob@example.org")
		if res.ExitCode != testenv.SwaksOK || !strings.HasPrefix(res.EndOfDataReply(), "250 ") {
			t.Fatalf("swaks exit %d, end of data %q, want 0 and 250:\n%s", res.ExitCode, res.EndOfDataReply(), res.Transcript)
		}
		m := arrived(t, "e2e-accept")
		if m.From != "alice@example.com" || !slices.Equal(m.To, []string{"bob@example.org"}) {
			t.Errorf("sink envelope %q -> %q", m.From, m.To)
		}
		line := p.waitDecision(t, "e2e-accept-alice", func(l map[string]any) bool {
			return l["account"] == "alice" && l["action"] == "accept" && l["stage"] == "eom"
		})
		if qid, _ := line["queue_id"].(string); qid == "" || !strings.Contains(res.EndOfDataReply(), qid) {
			t.Errorf("decision log queue id %q is not the one Postfix gave the client (%q)", qid, res.EndOfDataReply())
		}
	})

	t.Run("550 5.7.1: a forged From is rejected naming the rule", func(t *testing.T) {
		res := send(t, "alice", "alice@example.com", "Chief Executive <ceo@other-company.example>", "e2e-forged", "bob@example.org")
		want := "550 5.7.1 Rejected under the e-mail abuse policy (impersonation: FROM_DOMAIN_NOT_OWNED)"
		if res.ExitCode != testenv.SwaksMessageRefused || res.EndOfDataReply() != want {
			t.Fatalf("swaks exit %d, end of data %q, want %d and %q:\n%s", res.ExitCode, res.EndOfDataReply(), testenv.SwaksMessageRefused, want, res.Transcript)
		}
		pf.WaitLog(t, regexp.MustCompile(`milter-reject: END-OF-MESSAGE .*5\.7\.1 Rejected under the e-mail abuse policy \(impersonation: FROM_DOMAIN_NOT_OWNED\)`), e2eWait)
	})

	t.Run("452 4.5.3: recipients past the cap are refused, the rest delivered", func(t *testing.T) {
		res := send(t, "alice", "alice@example.com", "alice@example.com", "e2e-cap", "one@example.org", "two@example.org", "three@example.org")
		rcpt := res.RepliesTo("RCPT TO:")
		if res.ExitCode != testenv.SwaksOK || len(rcpt) != 3 || !strings.HasPrefix(rcpt[0], "250 ") || !strings.HasPrefix(rcpt[1], "250 ") ||
			!strings.HasPrefix(rcpt[2], "452 4.5.3 ") || !strings.Contains(rcpt[2], "RCPT_PER_MESSAGE_LIMIT 2") {
			t.Fatalf("swaks exit %d, RCPT replies %q, want 250, 250, 452 4.5.3 ... RCPT_PER_MESSAGE_LIMIT 2:\n%s", res.ExitCode, rcpt, res.Transcript)
		}
		m := arrived(t, "e2e-cap")
		got := append([]string(nil), m.To...)
		sort.Strings(got)
		if !slices.Equal(got, []string{"one@example.org", "two@example.org"}) {
			t.Errorf("sink recipients %q, want one@ and two@", m.To)
		}
	})

	t.Run("451 4.7.1: over the account's rate the message is deferred with a retry time", func(t *testing.T) {
		if res := send(t, "bulk", "news@bulk.example", "news@bulk.example", "e2e-rate-1", "x@example.org"); res.ExitCode != testenv.SwaksOK {
			t.Fatalf("first message: swaks exit %d:\n%s", res.ExitCode, res.Transcript)
		}
		res := send(t, "bulk", "news@bulk.example", "news@bulk.example", "e2e-rate-2", "x@example.org")
		re := regexp.MustCompile(`^451 4\.7\.1 Deferred under the e-mail abuse policy \(spam-volume: ACCOUNT_MSG_RATE 1/1h, retry in \d+s\)$`)
		if res.ExitCode != testenv.SwaksMessageRefused || !re.MatchString(res.EndOfDataReply()) {
			t.Fatalf("second message: swaks exit %d, end of data %q, want 451 4.7.1 ACCOUNT_MSG_RATE:\n%s", res.ExitCode, res.EndOfDataReply(), res.Transcript)
		}
		arrived(t, "e2e-rate-1")
	})

	t.Run("two messages on one SMTP connection: the second still knows its login", func(t *testing.T) {
		s := testenv.DialSMTP(t, pf.Addr(), "client.test")
		defer s.Close()
		if r := s.XClient(t, "LOGIN=alice ADDR=203.0.113.11"); r.Code != 220 {
			t.Fatalf("XCLIENT reply %v", r)
		}
		first := s.Send(t, testenv.SMTPTransaction{From: "alice@example.com", To: []string{"carol@example.org"},
			Data: []byte("From: alice@example.com\nSubject: e2e-conn-1\n\nfirst\n")})
		second := s.Send(t, testenv.SMTPTransaction{From: "alice@example.com", To: []string{"carol@example.org"},
			Data: []byte("From: Bank <security@bank.example>\nSubject: e2e-conn-2\n\nsecond\n")})
		if first.End.Code != 250 {
			t.Fatalf("first message: %+v", first)
		}
		// Were the login lost, the account would be unknown and the reply
		// a 451 UNKNOWN_LOGIN instead of alice's forged-From rejection.
		if second.End.Code != 550 || !strings.Contains(second.End.String(), "FROM_DOMAIN_NOT_OWNED") {
			t.Fatalf("second message on the connection: %v, want 550 FROM_DOMAIN_NOT_OWNED", second.End)
		}
		arrived(t, "e2e-conn-1")
	})

	t.Run("the sendmail command goes through non_smtpd_milters as the local account", func(t *testing.T) {
		msg := []byte("From: www-data@host.example\nTo: dave@example.org\nSubject: e2e-sendmail\n\nfrom a web app\n")
		if out, err := pf.Sendmail(t, "www-data@host.example", []string{"dave@example.org"}, msg); err != nil {
			t.Fatalf("sendmail: %v\n%s", err, out)
		}
		m := arrived(t, "e2e-sendmail")
		if !slices.Equal(m.To, []string{"dave@example.org"}) {
			t.Errorf("sink recipients %q", m.To)
		}
		p.waitDecision(t, "sendmail submission", func(l map[string]any) bool {
			return l["account"] == "local" && l["identified_by"] == "network" && l["mail_from"] == "www-data@host.example" && l["stage"] == "eom"
		})
	})

	if t.Failed() {
		t.Logf("postfix log:\n%s", pf.Log())
	}
}

// waitDecision waits for a decision log line that matches.
func (p *proc) waitDecision(t *testing.T, what string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(e2eWait)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		for _, l := range p.lines {
			if l["msg"] == "decision" && match(l) {
				p.mu.Unlock()
				return l
			}
		}
		p.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	t.Fatalf("no decision log line for %s; log:\n%s", what, strings.Join(p.raw, "\n"))
	return nil
}

// TestEndToEndPostfixUnixSocket checks the documented unix-socket layout
// for Postfix's chroot: the daemon listens on a socket inside the queue
// directory with mode 0660 and group postfix, and Postfix names it
// relative to the queue directory, as chrooted smtpd and cleanup must.
func TestEndToEndPostfixUnixSocket(t *testing.T) {
	testenv.RequireTool(t, "postfix")
	testenv.RequireTool(t, "swaks")
	testenv.RequireRoot(t, "Postfix's master starts as root")

	sink := testenv.StartSink(t)
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{
		SMTPDMilter:    "unix:abusemilter/abusemilter.sock",
		NonSMTPDMilter: "unix:abusemilter/abusemilter.sock",
		RelayTo:        sink.Addr(),
	})
	// As documented: install -d -g postfix -m 0750 QUEUE_DIR/abusemilter.
	postfixGroup, err := user.LookupGroup("postfix")
	if err != nil {
		t.Fatal(err)
	}
	gid, _ := strconv.Atoi(postfixGroup.Gid)
	sockDir := filepath.Join(pf.QueueDir, "abusemilter")
	if err := os.MkdirAll(sockDir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(sockDir, 0, gid); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(sockDir, "abusemilter.sock")
	cfg := strings.Replace(e2eConfig, "listen: inet:127.0.0.1:0", "listen: unix:"+sock+"\nsocket:\n  mode: \"0660\"\n  group: postfix", 1)
	p := startDaemon(t, "--config", writeConfig(t, t.TempDir(), cfg))
	p.waitLog(t, "abusemilter ready", 0)

	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("socket mode %v, want a socket with 0660", fi.Mode())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Gid) != gid {
		t.Errorf("socket group %v, want postfix's %d", fi.Sys(), gid)
	}

	ok := testenv.Swaks(t, testenv.SwaksOptions{Server: pf.Addr(), From: "alice@example.com", To: []string{"bob@example.org"},
		XClientLogin: "alice", XClientAddr: "203.0.113.10", Headers: []string{"From: alice@example.com", "Subject: e2e-unix"}})
	if ok.ExitCode != testenv.SwaksOK {
		t.Fatalf("own mail over the unix socket: swaks exit %d:\n%s\npostfix log:\n%s", ok.ExitCode, ok.Transcript, pf.Log())
	}
	sink.WaitFor(t, e2eWait, "Subject e2e-unix", func(m testenv.SinkMessage) bool { return m.Header("Subject") == "e2e-unix" })
	bad := testenv.Swaks(t, testenv.SwaksOptions{Server: pf.Addr(), From: "alice@example.com", To: []string{"bob@example.org"},
		XClientLogin: "alice", XClientAddr: "203.0.113.10", Headers: []string{"From: ceo@other-company.example"}})
	if got := bad.EndOfDataReply(); !strings.HasPrefix(got, "550 5.7.1 ") || !strings.Contains(got, "FROM_DOMAIN_NOT_OWNED") {
		t.Fatalf("forged mail over the unix socket: %q", got)
	}
}

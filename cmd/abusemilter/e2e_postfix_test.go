package main

import (
	"encoding/json"
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
		res := testenv.Swaks(t, testenv.SwaksOptions{
			Server: pf.Addr(), From: "alice@example.com", To: []string{"bob@example.org"}, Helo: "desk.client.test",
			XClientLogin: "alice", XClientAddr: "203.0.113.10",
			Headers: []string{"From: Chief Executive <ceo@other-company.example>", "Subject: e2e-forged", "Message-Id: <e2e-forged-1@example.com>"},
			Body:    "Hello,\nplease wire the money. E2E-BODY-MARKER\n",
		})
		want := "550 5.7.1 Rejected under the e-mail abuse policy (impersonation: FROM_DOMAIN_NOT_OWNED)"
		if res.ExitCode != testenv.SwaksMessageRefused || res.EndOfDataReply() != want {
			t.Fatalf("swaks exit %d, end of data %q, want %d and %q:\n%s", res.ExitCode, res.EndOfDataReply(), testenv.SwaksMessageRefused, want, res.Transcript)
		}
		line := pf.WaitLog(t, regexp.MustCompile(`milter-reject: END-OF-MESSAGE .*5\.7\.1 Rejected under the e-mail abuse policy \(impersonation: FROM_DOMAIN_NOT_OWNED\)`), e2eWait)
		// The decision line says what the rule saw: which From was
		// forged, in which message, and why; it joins Postfix's line by
		// the queue id.
		d := p.waitDecision(t, "the forged message", func(l map[string]any) bool {
			return l["stage"] == "eom" && l["message_id"] == "<e2e-forged-1@example.com>"
		})
		if hf, _ := d["header_from"].([]any); len(hf) != 1 || hf[0] != "ceo@other-company.example" {
			t.Errorf("decision header_from = %v, want [ceo@other-company.example]", d["header_from"])
		}
		if d["helo"] != "desk.client.test" || d["subject_len"] != float64(len("e2e-forged")) || d["reply"] != want {
			t.Errorf("decision helo %v, subject_len %v, reply %v", d["helo"], d["subject_len"], d["reply"])
		}
		var reason string
		findings, _ := d["findings"].([]any)
		for _, f := range findings {
			if f := f.(map[string]any); f["rule"] == "FROM_DOMAIN_NOT_OWNED" {
				reason, _ = f["reason"].(string)
			}
		}
		if !strings.Contains(reason, "other-company.example") {
			t.Errorf("FROM_DOMAIN_NOT_OWNED's reason %q does not name the forged domain; findings %v", reason, findings)
		}
		if qid, _ := d["queue_id"].(string); qid == "" || !strings.Contains(line, qid+": milter-reject") {
			t.Errorf("decision queue id %q is not the one of Postfix's line %q", qid, line)
		}
		raw, _ := json.Marshal(d)
		t.Logf("joined by queue id:\n  postfix:  %s\n  decision: %s", line, raw)
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, raw := range p.raw {
			if strings.Contains(raw, "E2E-BODY-MARKER") || strings.Contains(raw, "wire the money") {
				t.Errorf("the daemon's log holds body text: %s", raw)
			}
		}
	})

	t.Run("451 at MAIL FROM: the decision line joins Postfix's NOQUEUE line", func(t *testing.T) {
		res := testenv.Swaks(t, testenv.SwaksOptions{
			Server: pf.Addr(), From: "mallory@example.net", To: []string{"victim@example.org"}, Helo: "joinme.client.test",
			XClientLogin: "mallory", XClientAddr: "198.51.100.23",
		})
		if !strings.Contains(res.Transcript, "451 4.7.1 Deferred under the e-mail abuse policy (policy: UNKNOWN_LOGIN)") {
			t.Fatalf("unknown login: want a 451 at MAIL FROM:\n%s", res.Transcript)
		}
		pf.WaitLog(t, regexp.MustCompile(`NOQUEUE: milter-reject: MAIL from .*\[198\.51\.100\.23\]`), e2eWait)
		p.waitDecision(t, "the MAIL-stage refusal", func(l map[string]any) bool {
			return l["stage"] == "mail" && l["client"] == "198.51.100.23"
		})
		p.mu.Lock()
		decisions := append([]string(nil), p.raw...)
		p.mu.Unlock()
		joined := joinNoqueue(t, pf.Log(), decisions)
		got, ok := joined["198.51.100.23"]
		if !ok {
			t.Fatalf("no NOQUEUE line joined a decision line; postfix log:\n%s", pf.Log())
		}
		if got.decision["rule"] != "UNKNOWN_LOGIN" || got.decision["login"] != "mallory" || got.from != "mallory@example.net" ||
			got.helo != "joinme.client.test" || got.decision["milter_msg_id"] == "" {
			t.Errorf("joined: Postfix %q with decision %v", got.line, got.decision)
		}
		t.Logf("joined:\n  postfix:  %s\n  decision: %s", got.line, got.raw)
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

// noqueueLine is Postfix's line for a refusal before the queue file exists
// (smtpd.c): "NOQUEUE: milter-reject: MAIL from NAME[ADDR]: REPLY;
// from=<SENDER> proto=ESMTP helo=<HELO>" (a RCPT-stage one adds to=<...>
// before proto=).
var noqueueLine = regexp.MustCompile(`NOQUEUE: milter-reject: (MAIL|RCPT) from ([^\[ ]*)\[([^\]]+)\]: (.+); from=<([^>]*)>(?: to=<([^>]*)>)? proto=(\S+) helo=<([^>]*)>`)

// noqueueJoin is one Postfix NOQUEUE line and the decision line it joins.
type noqueueJoin struct {
	line, raw      string
	from, to, helo string
	decision       map[string]any
}

// joinNoqueue joins every Postfix NOQUEUE milter-reject line to the
// daemon's decision line of the same refusal, as docs/guide.md tells the
// abuse desk to: same stage, client address, reply text, envelope sender,
// HELO name (and recipient at RCPT). Postfix does not give milters the
// protocol, so proto is not compared. The result is keyed by client address.
func joinNoqueue(t *testing.T, postfixLog string, daemonLines []string) map[string]noqueueJoin {
	t.Helper()
	out := map[string]noqueueJoin{}
	for _, line := range strings.Split(postfixLog, "\n") {
		m := noqueueLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		stage, name, addr, reply, from, to, helo := strings.ToLower(m[1]), m[2], m[3], m[4], m[5], m[6], m[8]
		for _, raw := range daemonLines {
			var d map[string]any
			if json.Unmarshal([]byte(raw), &d) != nil || d["msg"] != "decision" {
				continue
			}
			if d["stage"] == stage && d["client"] == addr && d["client_name"] == name && d["reply"] == reply &&
				d["mail_from"] == from && d["helo"] == helo && (stage != "rcpt" || d["rcpt"] == to) {
				out[addr] = noqueueJoin{line: line, raw: raw, from: from, to: to, helo: helo, decision: d}
			}
		}
	}
	return out
}

package main

import (
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/abusemilter/abusemilter/internal/testutil/testenv"
)

// e2eSendmailConfig: Sendmail has no XCLIENT, so the test client is an
// unauthenticated relay on 127.0.0.1, mapped to the account "shop" by
// network, as a customer's own server would be.
const e2eSendmailConfig = `
listen: inet:127.0.0.1:0
dns:
  enabled: false
identity:
  networks:
    - {network: 127.0.0.1/32, account: shop}
  accounts:
    shop:
      send_as: [shop.example]
      limits:
        account_messages: [4/1h]
limits:
  max_recipients_per_message: 2
rules:
  actions:
    URL_RAW_IP: hold
`

// TestEndToEndSendmail runs the built daemon behind a real Sendmail 8.17
// (unpacked from Debian's packages, .cf built from configs/sendmail/) and
// checks the replies an SMTP client sees.
func TestEndToEndSendmail(t *testing.T) {
	testenv.RequireTool(t, "swaks")
	testenv.RequireRoot(t, "Sendmail runs in its own mount and UTS namespace")

	p := startDaemon(t, "--config", writeConfig(t, t.TempDir(), e2eSendmailConfig))
	addr := milterAddr(t, p)
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	sink := testenv.StartSink(t)
	sm := testenv.StartSendmail(t, testenv.SendmailOptions{MilterSocket: "inet:" + port + "@127.0.0.1", RelayTo: sink.Addr()})

	send := func(t *testing.T, from, headerFrom, subject string, to ...string) testenv.SwaksResult {
		t.Helper()
		return testenv.Swaks(t, testenv.SwaksOptions{Server: sm.Addr(), From: from, To: to,
			Headers: []string{"From: " + headerFrom, "Subject: " + subject}})
	}
	arrived := func(t *testing.T, subject string) testenv.SinkMessage {
		t.Helper()
		return sink.WaitFor(t, e2eWait, "Subject "+subject, func(m testenv.SinkMessage) bool { return m.Header("Subject") == subject })
	}

	t.Run("250: the customer's own mail is delivered", func(t *testing.T) {
		res := send(t, "orders@shop.example", "Shop <orders@shop.example>", "sm-accept", "bob@example.org")
		if res.ExitCode != testenv.SwaksOK {
			t.Fatalf("swaks exit %d:\n%s", res.ExitCode, res.Transcript)
		}
		arrived(t, "sm-accept")
		p.waitDecision(t, "sendmail accept", func(l map[string]any) bool {
			return l["account"] == "shop" && l["identified_by"] == "network" && l["action"] == "accept" && l["queue_id"] != ""
		})
	})

	t.Run("two messages on one SMTP connection: the second still knows its client", func(t *testing.T) {
		s := testenv.DialSMTP(t, sm.Addr(), "relay.shop.example")
		defer s.Close()
		first := s.Send(t, testenv.SMTPTransaction{From: "orders@shop.example", To: []string{"carol@example.org"},
			Data: []byte("From: orders@shop.example\nSubject: sm-conn-1\n\nfirst\n")})
		second := s.Send(t, testenv.SMTPTransaction{From: "orders@shop.example", To: []string{"carol@example.org"},
			Data: []byte("From: PayPal <service@paypal.example>\nSubject: sm-conn-2\n\nsecond\n")})
		if first.End.Code != 250 {
			t.Fatalf("first message: %+v", first)
		}
		// Had the client been forgotten, the reply would be 451 UNKNOWN_CLIENT.
		if second.End.Code != 550 || !strings.Contains(second.End.String(), "5.7.1 Rejected under the e-mail abuse policy (impersonation:") {
			t.Fatalf("second message: %v, want 550 5.7.1 impersonation", second.End)
		}
		arrived(t, "sm-conn-1")
	})

	t.Run("550 5.7.1: a foreign From is rejected naming the rule", func(t *testing.T) {
		res := send(t, "orders@shop.example", "ceo@other-company.example", "sm-forged", "bob@example.org")
		want := "550 5.7.1 Rejected under the e-mail abuse policy (impersonation: FROM_DOMAIN_NOT_OWNED)"
		if res.ExitCode != testenv.SwaksMessageRefused || res.EndOfDataReply() != want {
			t.Fatalf("swaks exit %d, end of data %q, want %q:\n%s", res.ExitCode, res.EndOfDataReply(), want, res.Transcript)
		}
	})

	t.Run("452 4.5.3: recipients past the cap are refused, the rest delivered", func(t *testing.T) {
		res := send(t, "orders@shop.example", "orders@shop.example", "sm-cap", "one@example.org", "two@example.org", "three@example.org")
		rcpt := res.RepliesTo("RCPT TO:")
		if res.ExitCode != testenv.SwaksOK || len(rcpt) != 3 || !strings.HasPrefix(rcpt[2], "452 4.5.3 ") {
			t.Fatalf("swaks exit %d, RCPT replies %q, want 250, 250, 452 4.5.3:\n%s", res.ExitCode, rcpt, res.Transcript)
		}
		got := append([]string(nil), arrived(t, "sm-cap").To...)
		sort.Strings(got)
		if !slices.Equal(got, []string{"one@example.org", "two@example.org"}) {
			t.Errorf("sink recipients %q", got)
		}
	})

	t.Run("250 and quarantined: a held message is in Sendmail's quarantine", func(t *testing.T) {
		res := testenv.Swaks(t, testenv.SwaksOptions{Server: sm.Addr(), From: "orders@shop.example", To: []string{"bob@example.org"},
			Headers: []string{"From: orders@shop.example", "Subject: sm-hold"}, Body: "log in at http://8.8.8.8/login\n"})
		m := regexp.MustCompile(`^250 2\.0\.0 (\S+) Message accepted for delivery`).FindStringSubmatch(res.EndOfDataReply())
		if res.ExitCode != testenv.SwaksOK || m == nil {
			t.Fatalf("swaks exit %d, end of data %q, want 250 with a queue id:\n%s", res.ExitCode, res.EndOfDataReply(), res.Transcript)
		}
		p.waitDecision(t, "sendmail hold", func(l map[string]any) bool {
			return l["action"] == "hold" && l["rule"] == "URL_RAW_IP" && l["queue_id"] == m[1]
		})
		q := sm.Quarantined(t)
		if !strings.Contains(q, m[1]) || !strings.Contains(q, "QUARANTINE: Held for review under the e-mail abuse policy") {
			t.Fatalf("mailq -qQ does not show %s quarantined by the milter:\n%s", m[1], q)
		}
		for _, msg := range sink.Messages() {
			if msg.Header("Subject") == "sm-hold" {
				t.Errorf("the held message reached the sink")
			}
		}
	})

	t.Run("451 4.7.1: over the account's rate the message is deferred", func(t *testing.T) {
		res := send(t, "orders@shop.example", "orders@shop.example", "sm-rate", "bob@example.org")
		re := regexp.MustCompile(`^451 4\.7\.1 Deferred under the e-mail abuse policy \(spam-volume: ACCOUNT_MSG_RATE 4/1h, retry in \d+s\)$`)
		if res.ExitCode != testenv.SwaksMessageRefused || !re.MatchString(res.EndOfDataReply()) {
			t.Fatalf("swaks exit %d, end of data %q, want 451 ACCOUNT_MSG_RATE:\n%s", res.ExitCode, res.EndOfDataReply(), res.Transcript)
		}
	})
}

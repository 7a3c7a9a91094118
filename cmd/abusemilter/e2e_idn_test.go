package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/testutil/testenv"
)

// e2eIDNConfig: an IDN customer whose login is written in Unicode and
// whose send_as is written in punycode, and alice (example.com) for the
// header-syntax cases; with Sendmail (no XCLIENT) the client is mapped by
// network to the IDN customer's account. Strikes are off: the tests send
// many refused messages on purpose.
const e2eIDNConfig = `
listen: inet:127.0.0.1:0
dns:
  enabled: false
strikes:
  threshold: 0
identity:
  accounts:
    mjl:
      logins: [mjl@hé.mox.example]
      send_as: [xn--h-bga.mox.example]
    alice:
      logins: [alice]
      send_as: [example.com]
`

const e2eIDNSendmailConfig = `
listen: inet:127.0.0.1:0
dns:
  enabled: false
strikes:
  threshold: 0
identity:
  networks:
    - {network: 127.0.0.1/32, account: mjl}
  accounts:
    mjl:
      send_as: [hé.mox.example, example.com]
`

// The two spellings of the IDN customer's address, and of a foreign one
// that differs in one accent.
const (
	idnUnicode  = "mjl@hé.mox.example"
	idnPunycode = "mjl@xn--h-bga.mox.example"
	foreignU    = "mjl@hè.mox.example"
	foreignP    = "mjl@xn--h-cga.mox.example"
)

// xtext encodes an XCLIENT attribute value (RFC 3461 xtext): bytes
// outside '!'..'~', '+' and '=' as "+XX".
func xtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '!' || c > '~' || c == '+' || c == '=' {
			fmt.Fprintf(&b, "+%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// smtputf8 returns the MAIL parameter an envelope sender needs.
func smtputf8(addr string) string {
	for i := 0; i < len(addr); i++ {
		if addr[i] >= 0x80 {
			return "SMTPUTF8"
		}
	}
	return ""
}

// idnMessage is a message from the given From address.
func idnMessage(from, subject string) []byte {
	return []byte("From: Mjl <" + from + ">\nTo: bob@example.org\nSubject: " + subject +
		"\nDate: " + time.Now().UTC().Format(time.RFC1123Z) + "\nMessage-ID: <" + subject + "@xn--h-bga.mox.example>\n\nHello.\n")
}

// headerSyntaxCases are messages whose From, Sender or Resent-From is
// written plain, with a space or with a tab before the colon, on a line
// after the first: each must be judged like its plain form.
func headerSyntaxCases(own, foreign string) []struct {
	name string
	data []byte
	code int
} {
	var out []struct {
		name string
		data []byte
		code int
	}
	for _, field := range []string{"From", "Sender", "Resent-From"} {
		for _, sep := range []string{":", " :", "\t:", " \t :"} {
			for _, addr := range []string{own, foreign} {
				code := 250
				if addr == foreign {
					code = 550
				}
				subject := fmt.Sprintf("syntax-%s-%q-%s", field, sep, addr)
				var b strings.Builder
				b.WriteString("Subject: " + subject + "\nTo: bob@example.org\n")
				if field != "From" {
					b.WriteString("From: <" + own + ">\n")
				}
				b.WriteString(field + sep + " Someone <" + addr + ">\n")
				if field == "Resent-From" {
					b.WriteString("Resent-Date: " + time.Now().UTC().Format(time.RFC1123Z) + "\n")
				}
				b.WriteString("Date: " + time.Now().UTC().Format(time.RFC1123Z) + "\nMessage-ID: <" + fmt.Sprint(len(out)) + "@example.com>\n\nHello.\n")
				out = append(out, struct {
					name string
					data []byte
					code int
				}{subject, []byte(b.String()), code})
			}
		}
	}
	return out
}

// TestEndToEndIDNPostfix: through a real Postfix, an IDN customer is
// accepted with every combination of Unicode and punycode in its SASL
// login (XCLIENT LOGIN), its envelope sender (SMTPUTF8 for Unicode) and
// its From; a foreign address in either spelling is rejected, in the From
// and in the envelope; From, Sender and Resent-From written with a space
// or a tab before the colon are judged like their plain forms.
func TestEndToEndIDNPostfix(t *testing.T) {
	testenv.RequireTool(t, "postfix")
	testenv.RequireRoot(t, "Postfix's master starts as root")
	p := startDaemon(t, "--config", writeConfig(t, t.TempDir(), e2eIDNConfig))
	sink := testenv.StartSink(t)
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{
		SMTPDMilter: "inet:" + milterAddr(t, p), MilterDefaultAction: "tempfail",
		MilterCommandTimeout: 10 * time.Second, MilterContentTimeout: 20 * time.Second, RelayTo: sink.Addr(),
	})
	session := func(t *testing.T, login string) *testenv.SMTPSession {
		s := testenv.DialSMTP(t, pf.Addr(), "client.example")
		if r := s.XClient(t, "LOGIN="+xtext(login)+" ADDR=203.0.113.10"); r.Code != 220 {
			t.Fatalf("XCLIENT LOGIN=%s: %v", login, r)
		}
		return s
	}
	spellings := []string{idnUnicode, idnPunycode}
	n := 0
	for _, login := range spellings {
		s := session(t, login)
		for _, env := range spellings {
			for _, from := range append(spellings, foreignU, foreignP) {
				n++
				subject := fmt.Sprintf("idn-%d", n)
				want := 250
				if from == foreignU || from == foreignP {
					want = 550
				}
				r := s.Send(t, testenv.SMTPTransaction{From: env, MailParams: smtputf8(env), To: []string{"bob@example.org"}, Data: idnMessage(from, subject)})
				if r.End.Code != want || (want == 550 && !strings.Contains(r.End.Text, "FROM_DOMAIN_NOT_OWNED")) {
					t.Errorf("login %s, envelope %s, From %s: %+v, want %d", login, env, from, r, want)
				}
			}
		}
		for _, env := range []string{foreignU, foreignP} {
			n++
			r := s.Send(t, testenv.SMTPTransaction{From: env, MailParams: smtputf8(env), To: []string{"bob@example.org"}, Data: idnMessage(idnPunycode, fmt.Sprintf("idn-%d", n))})
			if r.End.Code != 550 || !strings.Contains(r.End.Text, "FROM_DOMAIN_NOT_OWNED") {
				t.Errorf("login %s, foreign envelope %s: %+v, want 550 FROM_DOMAIN_NOT_OWNED", login, env, r)
			}
		}
	}
	p.waitDecision(t, "an IDN customer's decision", func(l map[string]any) bool {
		return l["account"] == "mjl" && l["stage"] == "eom" && l["action"] == "accept"
	})

	s := session(t, "alice")
	for _, c := range headerSyntaxCases("alice@example.com", "ceo@other-company.example") {
		r := s.Send(t, testenv.SMTPTransaction{From: "alice@example.com", To: []string{"bob@example.org"}, Data: c.data})
		if r.End.Code != c.code || (c.code == 550 && !strings.Contains(r.End.Text, "FROM_DOMAIN_NOT_OWNED")) {
			t.Errorf("%s: %v, want %d", c.name, r.End, c.code)
		}
	}
}

// TestEndToEndIDNSendmail: the same through a real Sendmail 8.17, which
// has no XCLIENT (the client is the IDN customer by network) and, as
// Debian builds it, no SMTPUTF8: the envelope sender is written in
// punycode there, the From in either spelling.
func TestEndToEndIDNSendmail(t *testing.T) {
	testenv.RequireRoot(t, "Sendmail runs in its own mount and UTS namespace")
	p := startDaemon(t, "--config", writeConfig(t, t.TempDir(), e2eIDNSendmailConfig))
	addr := milterAddr(t, p)
	sink := testenv.StartSink(t)
	sm := testenv.StartSendmail(t, testenv.SendmailOptions{MilterSocket: "inet:" + addr[strings.LastIndexByte(addr, ':')+1:] + "@127.0.0.1", RelayTo: sink.Addr()})
	s := testenv.DialSMTP(t, sm.Addr(), "client.example")
	envs := []string{idnPunycode}
	if strings.Contains(s.Ehlo.Text, "SMTPUTF8") {
		envs = append(envs, idnUnicode)
	}
	n := 0
	for _, env := range envs {
		for _, from := range []string{idnUnicode, idnPunycode, foreignU, foreignP} {
			n++
			want := 250
			if from == foreignU || from == foreignP {
				want = 550
			}
			r := s.Send(t, testenv.SMTPTransaction{From: env, MailParams: smtputf8(env), To: []string{"bob@example.org"}, Data: idnMessage(from, fmt.Sprintf("sm-idn-%d", n))})
			if r.End.Code != want || (want == 550 && !strings.Contains(r.End.Text, "FROM_DOMAIN_NOT_OWNED")) {
				t.Errorf("envelope %s, From %s: %+v, want %d", env, from, r, want)
			}
		}
	}
	r := s.Send(t, testenv.SMTPTransaction{From: foreignP, To: []string{"bob@example.org"}, Data: idnMessage(idnPunycode, "sm-idn-foreign")})
	if r.End.Code != 550 || !strings.Contains(r.End.Text, "FROM_DOMAIN_NOT_OWNED") {
		t.Errorf("foreign envelope %s: %+v", foreignP, r)
	}
	for _, c := range headerSyntaxCases("alice@example.com", "ceo@other-company.example") {
		r := s.Send(t, testenv.SMTPTransaction{From: "alice@example.com", To: []string{"bob@example.org"}, Data: c.data})
		if r.End.Code != c.code || (c.code == 550 && !strings.Contains(r.End.Text, "FROM_DOMAIN_NOT_OWNED")) {
			t.Errorf("%s: %v, want %d", c.name, r.End, c.code)
		}
	}
}

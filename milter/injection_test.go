package milter_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/abusemilter/abusemilter/milter"
	"github.com/abusemilter/abusemilter/scoring"
)

// hostile are client-controlled strings meant to break out of a header
// value, an SMTP reply or a log line.
var hostile = []string{
	"a\r\nX-Injected: yes",
	"a\nX-Injected: yes",
	"a\rX-Injected: yes",
	"%s%n%d%%",
	"\x00nul",
	"\xff\xfe invalid utf-8",
	"\u2028line separator\u2029",
	"\x1b[31mred",
	`{"msg":"decision","action":"forged"}`,
}

// safeLine reports what is wrong with s as one line of a header value or an
// SMTP reply ("" when nothing is).
func safeLine(s string, percentAllowed bool) string {
	switch {
	case strings.ContainsAny(s, "\r\n\x00"):
		return "carries CR, LF or NUL"
	case !percentAllowed && strings.Contains(s, "%"):
		return "carries '%' (a format character to Sendmail)"
	case strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r > 0x7e }):
		return "carries a control or non-ASCII character"
	}
	return ""
}

// TestHostileInputMonitorMode drives monitor mode with CR/LF, '%' and other
// hostile bytes in every client-controlled field: the X-Abuse-* headers
// the milter adds stay one printable line, and every log line is one JSON
// object.
func TestHostileInputMonitorMode(t *testing.T) {
	h := start(t, milter.Options{Engine: newEngine(t, "mode: monitor\n"+baseConfig)})
	p := rawSession(t, h.addr)
	for i, bad := range hostile {
		p.macros(cmdConn, "{client_addr}", "192.0.2.10", "{client_name}", "h"+bad, "j", bad)
		p.command(cmdConn, cstr("h"+bad), []byte{'4', 0x9c, 0x40}, cstr("192.0.2.10"))
		p.command(cmdHelo, cstr("helo"+bad))
		from := "service" + bad + "@paypal.com"
		p.macros(cmdMail, "{auth_authen}", "alice", "{auth_type}", bad, "{mail_addr}", from, "i", "Q"+bad)
		if r := p.command(cmdMail, cstr("<"+from+">")); r.code != 'c' {
			t.Fatalf("monitor mode refused at MAIL: %q %q", r.code, r.text)
		}
		p.command(cmdRcpt, cstr("<bob"+bad+"@example.org>"))
		p.header("From", "\"PayPal"+bad+"\" <service"+bad+"@paypal.com>")
		p.header("Subject", bad)
		p.header("X-Abuse-Verdict", "accept"+bad)
		p.command(cmdEOH)
		p.command(cmdBody, []byte(bad+"\r\n"))
		r := p.command(cmdEOB)
		if r.code != 'a' {
			t.Fatalf("input %d: monitor mode answered %q %q, want accept", i, r.code, r.text)
		}
		added := 0
		for _, m := range r.mods {
			if m.code != 'h' {
				continue
			}
			name, value, _ := bytes.Cut(bytes.TrimSuffix(m.data, []byte{0}), []byte{0})
			added++
			if !strings.HasPrefix(string(name), "X-Abuse-") {
				t.Errorf("input %d: added header %q", i, name)
			}
			if why := safeLine(string(value), true); why != "" {
				t.Errorf("input %d: added %s value %q %s", i, name, value, why)
			}
		}
		if added == 0 {
			t.Fatalf("input %d: monitor mode added no header: %+v", i, r.mods)
		}
		p.send(cmdAbort)
	}
	lines := strings.Split(strings.TrimSuffix(h.logs.String(), "\n"), "\n")
	decisions := 0
	for _, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("a log line is not one JSON object: %q: %v", line, err)
		}
		if m["msg"] == "decision" {
			decisions++
			if m["action"] != "reject" || m["monitor"] != true {
				t.Errorf("hostile input changed a decision line's fields: %v", m)
			}
		}
	}
	if decisions != len(hostile) {
		t.Fatalf("%d decision lines for %d messages (a line was split or forged):\n%s", decisions, len(hostile), h.logs)
	}
}

// TestHostileInputEnforceReplies: the SMTP replies of enforce mode carry no
// client-controlled CR, LF or '%', whatever the client sent.
func TestHostileInputEnforceReplies(t *testing.T) {
	h := start(t, milter.Options{Engine: newEngine(t, baseConfig)})
	p := rawSession(t, h.addr)
	p.connect("192.0.2.10")
	for i, bad := range hostile {
		// An unknown login is refused at MAIL.
		p.macros(cmdMail, "{auth_authen}", "mallory"+bad, "{mail_addr}", "m"+bad+"@example.com")
		if r := p.command(cmdMail, cstr("<m"+bad+"@example.com>")); r.code != 'y' || safeLine(r.text, false) != "" {
			t.Errorf("input %d: MAIL of an unknown login answered %q %q", i, r.code, r.text)
		}
		p.send(cmdAbort)
		from := "service" + bad + "@paypal.com"
		p.macros(cmdMail, "{auth_authen}", "alice", "{mail_addr}", from, "i", "Q"+bad)
		p.command(cmdMail, cstr("<"+from+">"))
		for range 3 { // the third recipient is over the cap of 2
			if r := p.command(cmdRcpt, cstr("<bob"+bad+"@example.org>")); r.code == 'y' {
				if why := safeLine(r.text, false); why != "" {
					t.Errorf("input %d: RCPT reply %q %s", i, r.text, why)
				}
			}
		}
		p.header("From", "\"PayPal"+bad+"\" <service"+bad+"@paypal.com>")
		p.command(cmdEOH)
		r := p.command(cmdEOB)
		if r.code != 'y' || !strings.HasPrefix(r.text, "550 ") {
			t.Fatalf("input %d: %q %q, want a 550 reply", i, r.code, r.text)
		}
		if why := safeLine(r.text, false); why != "" {
			t.Errorf("input %d: reply %q %s", i, r.text, why)
		}
		p.send(cmdAbort)
	}
}

// TestReplyAndHeaderSanitising: whatever a rule puts in a verdict (rules are
// free to quote client data in a detail), the reply and header values the
// milter writes stay one safe line.
func TestReplyAndHeaderSanitising(t *testing.T) {
	for _, bad := range hostile {
		v := scoring.RejectVerdict(scoring.Clause("impersonation"+bad), "RULE"+bad, "detail "+bad, []scoring.Finding{{Rule: "F" + bad, Score: 1}}, 10)
		v.Rule = "RULE" + bad
		v.Clause = scoring.Clause("clause" + bad)
		msg := milter.ResponseFor(v).Response()
		if msg.Code != 'y' {
			t.Fatalf("reject verdict became %q", msg.Code)
		}
		reply := strings.TrimSuffix(string(msg.Data), "\x00")
		if why := safeLine(reply, false); why != "" {
			t.Errorf("reply %q %s", reply, why)
		}
		for _, value := range []string{milter.VerdictHeader(v), milter.FindingsHeader(v.Findings)} {
			if why := safeLine(value, true); why != "" {
				t.Errorf("header value %q %s", value, why)
			}
		}
		d := scoring.DeferVerdict(scoring.Clause("c"+bad), "R"+bad, bad, 0, nil)
		reply = strings.TrimSuffix(string(milter.ResponseFor(d).Response().Data), "\x00")
		if why := safeLine(reply, false); why != "" || !strings.HasPrefix(reply, "451 4.7.1 ") {
			t.Errorf("defer reply %q %s", reply, why)
		}
	}
}

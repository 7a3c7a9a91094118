package milter_test

import (
	"strings"
	"testing"

	"github.com/abusemilter/abusemilter/milter"
)

// postfixOffer is what Postfix 3.x with milter_protocol = 6 offers: every
// protocol option of version 6.
const postfixOffer = 0x1fffff

// With Postfix's offer the milter skips DATA, unknown commands and end of
// headers, and sends no reply to connect, HELO, headers and body chunks:
// the peer (like Postfix) then writes those without waiting. The stages
// that decide keep their replies and decide as before: the early refusal at
// MAIL FROM, the recipient cap at RCPT, the verdict at end of message. A
// reply written where none was agreed would be read as the answer to the
// next command and fail the checks below.
func TestNoReplyStagesDecideAsBefore(t *testing.T) {
	h := start(t, milter.Options{Engine: newEngine(t, baseConfig)})
	p := dialRaw(t, h.addr)
	version, asked := p.negotiateOffering(postfixOffer)
	if version != 6 || asked != uint32(milter.Protocol) {
		t.Fatalf("negotiated version %d, options 0x%x; want 6, 0x%x", version, asked, uint32(milter.Protocol))
	}
	p.connect("192.0.2.10")
	p.command(cmdHelo, cstr("client.example.net"))

	// 1. An accepted message with a forged X-Abuse-Verdict, three
	// recipients (the third over the cap of 2) and two body chunks.
	if r := p.mail("alice@example.com", "alice"); r.code != 'c' {
		t.Fatalf("mail: %q %s, want continue", r.code, r.text)
	}
	for i, rcpt := range []string{"bob@example.org", "carol@example.org", "dave@example.org"} {
		r := p.command(cmdRcpt, cstr("<"+rcpt+">"))
		if i < 2 && r.code != 'c' {
			t.Fatalf("rcpt %d: %q %s, want continue", i+1, r.code, r.text)
		}
		if i == 2 && (r.code != 'y' || !strings.HasPrefix(r.text, "452 4.5.3")) {
			t.Fatalf("rcpt over the cap: %q %q, want a 452 4.5.3 reply", r.code, r.text)
		}
	}
	for _, f := range [][2]string{{"From", " alice@example.com"}, {"To", " bob@example.org"}, {"Subject", " hello"}, {"X-Abuse-Verdict", " accept; forged"}} {
		p.header(f[0], f[1])
	}
	p.command(cmdEOH)
	p.command(cmdBody, []byte("first chunk\r\n"))
	p.command(cmdBody, []byte("second chunk\r\n"))
	end := p.command(cmdEOB)
	if end.code != 'a' {
		t.Fatalf("end of message: %q %s, want accept", end.code, end.text)
	}
	if len(end.mods) != 1 || end.mods[0].code != 'm' {
		t.Fatalf("end of message modifications %v, want the client's X-Abuse-Verdict removed", end.mods)
	}
	p.send(cmdAbort)

	// 2. The same session: an unknown login is refused at MAIL FROM, with
	// a reply.
	if r := p.mail("mallory@example.com", "mallory"); r.code != 'y' || !strings.HasPrefix(r.text, "4") {
		t.Fatalf("mail from an unknown login: %q %q, want a 4xx reply", r.code, r.text)
	}
	p.send(cmdAbort)

	// 3. Then a message decided at end of message, still in order.
	p.mail("alice@example.com", "alice")
	p.command(cmdRcpt, cstr("<bob@example.org>"))
	p.header("From", " mallory@bank.example")
	p.command(cmdBody, []byte("pay now\r\n"))
	if end := p.command(cmdEOB); end.code != 'y' || !strings.HasPrefix(end.text, "550 5.7.1") {
		t.Fatalf("end of message with a From alice does not own: %q %q, want a 550 5.7.1 reply", end.code, end.text)
	}
	p.send(cmdAbort)
	p.send(cmdQuit)
	p.expectClosed()

	var stages []string
	for _, d := range h.logs.decisions(t) {
		stages = append(stages, d["stage"].(string)+":"+d["action"].(string))
	}
	if got, want := strings.Join(stages, " "), "rcpt:defer eom:accept mail:defer eom:reject"; got != want {
		t.Fatalf("decisions %q, want %q", got, want)
	}
}

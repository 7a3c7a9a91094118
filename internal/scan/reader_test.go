package scan

import (
	"slices"
	"testing"
)

// TestScannerReadsAsTheMilter: the scanner judges a From, Sender or
// Resent-From written with whitespace before the colon on a later line
// like its plain form (as Postfix and Sendmail hand it to the milter), and
// takes a file starting with "From : " for one message, not an mbox.
func TestScannerReadsAsTheMilter(t *testing.T) {
	const rest = "To: bob@example.net\nSubject: s\nMessage-ID: <1@example.com>\nDate: Fri, 20 Nov 2026 11:58:00 +0000\n\nbody\n"
	for _, tt := range []struct{ name, raw, verdict, rule string }{
		{"plain", "Subject: x\nFrom: PayPal <service@paypal.com>\n" + rest, "reject", "FROM_DOMAIN_NOT_OWNED"},
		{"space", "Subject: x\nFrom : PayPal <service@paypal.com>\n" + rest, "reject", "FROM_DOMAIN_NOT_OWNED"},
		{"tab", "Subject: x\nFrom\t: PayPal <service@paypal.com>\n" + rest, "reject", "FROM_DOMAIN_NOT_OWNED"},
		{"sender", "From: alice@example.com\nSender \t: ceo@other.example\n" + rest, "reject", "FROM_DOMAIN_NOT_OWNED"},
		{"resent", "From: alice@example.com\nResent-From : ceo@other.example\n" + rest, "reject", "FROM_DOMAIN_NOT_OWNED"},
		{"own", "Subject: x\nFrom : Alice <alice@example.com>\n" + rest, "accept", ""},
	} {
		o := scanOpts(tempFile(t, tt.name+".eml", tt.raw))
		o.Account = "alice"
		r := runScan(t, o)
		if len(r.messages) != 1 || r.messages[0].Verdict != tt.verdict || r.messages[0].Rule != tt.rule {
			t.Errorf("%s: %+v, want %s %s", tt.name, r.messages, tt.verdict, tt.rule)
		}
		if r.stderr != "" {
			t.Errorf("%s: warnings %q", tt.name, r.stderr)
		}
	}
	// First line "From : x": one message (no mbox, no truncation warning);
	// the line is an mbox From_ line to the MTAs and so to the reader.
	r := runScan(t, func() options {
		o := scanOpts(tempFile(t, "first.eml", "From : PayPal <service@paypal.com>\nSubject: x\n\nbody"))
		o.Account = "alice"
		return o
	}())
	if len(r.messages) != 1 || r.messages[0].Format != "eml" || r.stderr != "" {
		t.Errorf("first-line From : %+v, stderr %q", r.messages, r.stderr)
	}
}

// TestScannerEnvelope: the default envelope sender is the first
// Return-Path that is an address; a message naming no sender at all gets
// no invented null sender; a resent message is its resender's with
// --account-from-sender, as received or not.
func TestScannerEnvelope(t *testing.T) {
	const rest = "To: bob@example.net\nSubject: s\nMessage-ID: <1@a.example>\nDate: Fri, 20 Nov 2026 11:58:00 +0000\n\nbody\n"
	o := scanOpts(tempFile(t, "rp.eml", "Return-Path: <>\nReturn-Path: <alice@example.com>\nFrom: alice@example.com\n"+rest))
	if r := runScan(t, o); r.messages[0].EnvelopeFrom != "alice@example.com" || r.messages[0].Account != "alice" {
		t.Errorf("Return-Path: %+v", r.messages[0])
	}
	o = scanOpts(tempFile(t, "nofrom.eml", "Subject: no sender\n"+rest))
	o.Account = "alice"
	if r := runScan(t, o); slices.Contains(r.messages[0].Rules, "NULL_SENDER_AUTHENTICATED") {
		t.Errorf("no From: %v", r.messages[0].Rules)
	}
	resent := "Return-Path: <bounces@lists.example>\nFrom: Carol <carol@a.example>\nResent-From: Dan <dan@b.example>\nResent-Sender: robot@c.example\n" + rest
	for _, asReceived := range []bool{false, true} {
		o = scanOpts(tempFile(t, "resent.eml", resent))
		o.AccountFromSender, o.AsReceived = true, asReceived
		r := runScan(t, o)
		if m := r.messages[0]; m.Verdict != "accept" {
			t.Errorf("resent (as received %v): %s %v", asReceived, m.Verdict, m.Rules)
		}
	}
	for _, asReceived := range []bool{false, true} {
		o = scanOpts(tempFile(t, "nofrom2.eml", "Subject: no sender\n"+rest))
		o.AccountFromSender, o.AsReceived = true, asReceived
		r := runScan(t, o)
		if m := r.messages[0]; slices.Contains(m.Rules, "NULL_SENDER_AUTHENTICATED") || m.EnvelopeFrom != "" {
			t.Errorf("no sender (as received %v): envelope %q rules %v", asReceived, m.EnvelopeFrom, m.Rules)
		}
	}
}

package mailbox

import (
	"net/mail"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/scoring"
)

func names(hs []scoring.Header) []string {
	var out []string
	for _, h := range hs {
		out = append(out, h.Name)
	}
	return out
}

func TestStripTrace(t *testing.T) {
	raw, err := os.ReadFile(td("received.eml"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseMessage(strings.NewReader(string(raw)), 1000)
	if err != nil {
		t.Fatal(err)
	}
	// The provider's MTA is found: everything above its Received goes.
	got := names(StripTrace(m.Headers, []string{"provider.test"}))
	equal(t, "own MTA", got, []string{"Received", "From", "To", "Subject", "Date", "Message-ID"})
	// Not found (or not configured): every receiver-added header goes.
	for _, mtas := range [][]string{nil, {"elsewhere.test"}} {
		got = names(StripTrace(m.Headers, mtas))
		equal(t, "no own MTA", got, []string{"From", "To", "Subject", "Date", "Message-ID"})
	}
	if len(m.Headers) != 11 {
		t.Errorf("StripTrace modified its input: %d headers", len(m.Headers))
	}
	newest, ok := NewestReceived(m.Headers)
	if want := time.Date(2026, 11, 20, 11, 0, 5, 0, time.UTC); !ok || !newest.Equal(want) {
		t.Errorf("NewestReceived = %v %v, want %v", newest, ok, want)
	}
}

func TestReceivedHelpers(t *testing.T) {
	if by := ReceivedBy("from x (x [1.2.3.4])\n\tby MX1.Example.NET (Postfix) with ESMTP id 1"); by != "mx1.example.net" {
		t.Errorf("ReceivedBy = %q", by)
	}
	for _, v := range []string{
		"from a by b; Thu, 22 Aug 2002 10:00:00 -0700 (PDT)",
		"from a by b; 22 Aug 2002 17:00:00 +0000",
		"from a by b;\n\tThu, 22 Aug 2002 17:00:00 GMT",
	} {
		got, ok := ReceivedTime(v)
		if want := time.Date(2002, 8, 22, 17, 0, 0, 0, time.UTC); !ok || !got.Equal(want) {
			t.Errorf("ReceivedTime(%q) = %v %v", v, got, ok)
		}
	}
	if _, ok := ReceivedTime("from a by b"); ok {
		t.Error("ReceivedTime without a date succeeded")
	}
	if !IsReceiverHeader("ARC-Seal") || !IsReceiverHeader("x-spam-status") || IsReceiverHeader("DKIM-Signature") || IsReceiverHeader("From") {
		t.Error("IsReceiverHeader misclassifies")
	}
}

func TestParseDateAgreesWithNetMail(t *testing.T) {
	for _, s := range []string{
		"Fri, 20 Nov 2026 10:00:00 +0000", "Fri, 2 Aug 2002 10:00:00 -0700 (PDT)", "2 Aug 2002 10:00:00 +0200",
		" Thu, 22 Aug 2002 17:00:00 GMT", "Thu, 22 Aug 2002 17:00 +0000", "Mon, 2 Sep 2002 1:02:03 -0000",
	} {
		got, ok := ParseDate(s)
		want, err := mail.ParseDate(strings.TrimSpace(strings.Split(s, "(")[0]))
		if !ok || err != nil || !got.Equal(want) {
			t.Errorf("ParseDate(%q) = %v %v; net/mail: %v %v", s, got, ok, want, err)
		}
	}
	if _, ok := ParseDate("yesterday"); ok {
		t.Error("ParseDate accepted nonsense")
	}
}

package scoring_test

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/abusemilter/abusemilter/scoring"
)

func TestParseMessage(t *testing.T) {
	raw := "From sender@example.com Fri Nov 27 11:58:00 2026\n" +
		"Received: from a by b;\r\n\tFri, 27 Nov 2026 11:58:00 +0000\r\n" +
		"Subject:  folded\n  subject\n" +
		"X-Empty:\n" +
		"\n" +
		"0123456789abcdef"
	m, err := scoring.ParseMessage(strings.NewReader(raw), 10)
	if err != nil {
		t.Fatal(err)
	}
	want := []scoring.Header{
		{Name: "X-Mailbox-Line", Value: "From sender@example.com Fri Nov 27 11:58:00 2026"},
		{Name: "Received", Value: "from a by b;\n\tFri, 27 Nov 2026 11:58:00 +0000"},
		{Name: "Subject", Value: " folded\n  subject"},
		{Name: "X-Empty", Value: ""},
	}
	if len(m.Headers) != len(want) {
		t.Fatalf("headers = %q, want %q", m.Headers, want)
	}
	for i := range want {
		if m.Headers[i] != want[i] {
			t.Errorf("header %d = %q, want %q", i, m.Headers[i], want[i])
		}
	}
	if string(m.Body) != "0123456789" || m.BodySize != 16 || !m.BodyTruncated {
		t.Errorf("body %q size %d truncated %v, want 10-byte sample of 16", m.Body, m.BodySize, m.BodyTruncated)
	}
}

func TestParseMessageTolerance(t *testing.T) {
	// No blank line: the first line that is not a field starts the body.
	m, err := scoring.ParseMessage(strings.NewReader("From: a@example.com\nthis is body text\nmore"), 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Headers) != 1 || string(m.Body) != "this is body text\nmore" || m.BodyTruncated {
		t.Fatalf("headers %q body %q", m.Headers, m.Body)
	}
	// Headers only, no body, no final newline.
	m, err = scoring.ParseMessage(strings.NewReader("Subject: x"), 100)
	if err != nil || len(m.Headers) != 1 || m.BodySize != 0 {
		t.Fatalf("headers-only: %v %+v", err, m)
	}
	for _, bad := range []string{"", "\n\nbody", "not a header line\nFrom: a@b.c\n"} {
		if _, err := scoring.ParseMessage(strings.NewReader(bad), 100); !errors.Is(err, scoring.ErrNoHeader) {
			t.Errorf("ParseMessage(%q) err = %v, want ErrNoHeader", bad, err)
		}
	}
}

func TestStripTraceAndReceivedTime(t *testing.T) {
	m := parse(t, "Return-Path: <x@example.com>\n"+
		"Received: from mx by mail.example.net; Sat, 28 Nov 2026 10:00:00 +0100\n"+
		"Received: from pc by mx; Sat, 28 Nov 2026 08:00:00 +0000\n"+
		"X-Spam-Status: No\nARC-Seal: i=1\nDelivered-To: bob@example.net\n"+
		"From: Alice <alice@example.com>\nX-Originating-IP: [203.0.113.9]\nSubject: s\n\nbody\n")
	kept, trace := scoring.StripTrace(m.Headers)
	var names []string
	for _, h := range kept {
		names = append(names, h.Name)
	}
	if strings.Join(names, ",") != "From,X-Originating-IP,Subject" || len(trace) != 6 {
		t.Fatalf("kept %v, %d trace headers", names, len(trace))
	}
	got, ok := scoring.ReceivedTime(m.Headers)
	if !ok || !got.Equal(time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)) {
		t.Fatalf("ReceivedTime = %v %v, want the newest (topmost) 09:00 UTC", got, ok)
	}
}

func TestAsReceived(t *testing.T) {
	fallback := time.Date(2002, 9, 1, 0, 0, 0, 0, time.UTC)
	m := parse(t, "Return-Path: <carol@other.org>\n"+
		"Received: from x by mx.example.net; Mon, 02 Sep 2002 10:00:00 +0000\n"+
		"From: Carol <carol@other.org>\nTo: bob@example.net, Dan <dan@example.org>\nCc: eve@example.com\n"+
		"Date: Mon, 02 Sep 2002 09:59:00 +0000\nSubject: hi\n\nbody\n")
	r := scoring.AsReceived(m, "scan", fallback)
	if r.Env.MailFrom != "carol@other.org" || strings.Join(r.Env.Rcpts, ",") != "bob@example.net,dan@example.org,eve@example.com" {
		t.Errorf("envelope %+v", r.Env)
	}
	if !r.Account.MaySendAs("someone@other.org") || r.Account.MaySendAs("x@example.net") || r.Account.Forwarder {
		t.Errorf("account should own other.org only and not be a forwarder: %+v", r.Account)
	}
	if !r.Now.Equal(time.Date(2002, 9, 2, 10, 0, 0, 0, time.UTC)) || len(r.Trace) != 2 || m.Get("Received") != "" {
		t.Errorf("now %v, %d trace headers, Received left: %q", r.Now, len(r.Trace), m.Get("Received"))
	}

	list := parse(t, "From: carol@other.org\nList-Id: <club.lists.example.com>\nSubject: x\n\nbody\n")
	r = scoring.AsReceived(list, "scan", fallback)
	if !r.Account.Forwarder || !r.Account.AnySender || !r.Now.Equal(fallback) || len(r.Env.Rcpts) != 1 {
		t.Errorf("list post: account %+v now %v rcpts %v; want forwarder, fallback clock, placeholder recipient", r.Account, r.Now, r.Env.Rcpts)
	}
}

func TestParseMessageBoundsHeaders(t *testing.T) {
	huge := "X-Huge: " + strings.Repeat("a", 1<<20) + "\n"
	m, err := scoring.ParseMessage(strings.NewReader("From: a@example.com\n"+huge+"Subject: after\n\nbody"), 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Headers) != 3 || len(m.Headers[1].Value) > scoring.MaxHeaderLine || m.Get("Subject") != "after" || string(m.Body) != "body" {
		t.Fatalf("got %d headers, X-Huge %d bytes, Subject %q, body %q", len(m.Headers), len(m.Headers[1].Value), m.Get("Subject"), m.Body)
	}
	// A header section past MaxHeaderSection: the headers read so far are
	// kept, the rest of the section is dropped, the body is still found.
	var b strings.Builder
	b.WriteString("From: a@example.com\n")
	for b.Len() <= scoring.MaxHeaderSection {
		b.WriteString("X-Filler: " + strings.Repeat("b", 1000) + "\n")
	}
	b.WriteString("\nthe body")
	m, err = scoring.ParseMessage(strings.NewReader(b.String()), 100)
	if err != nil {
		t.Fatal(err)
	}
	if m.Get("From") != "a@example.com" || string(m.Body) != "the body" {
		t.Fatalf("From %q, body %q", m.Get("From"), m.Body)
	}
}

func TestParseMessageReadError(t *testing.T) {
	gone := errors.New("disk gone")
	for _, r := range []io.Reader{
		io.MultiReader(strings.NewReader("From: a@example.com\nSubj"), iotest.ErrReader(gone)),
		io.MultiReader(strings.NewReader("From: a@example.com\n\nbody"), iotest.ErrReader(gone)),
	} {
		if _, err := scoring.ParseMessage(r, 100); !errors.Is(err, gone) || !strings.Contains(err.Error(), "reading message") {
			t.Errorf("err = %v, want a wrapped read error", err)
		}
	}
}

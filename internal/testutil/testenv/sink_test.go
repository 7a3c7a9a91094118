package testenv

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestSinkRecordsTransactions drives the sink with the Go SMTP client:
// envelope, dot-unstuffing, header lookup, several messages per session.
func TestSinkRecordsTransactions(t *testing.T) {
	sink := StartSink(t)
	s := DialSMTP(t, sink.Addr(), "client.test")
	data := "Subject: first\r\nX-Folded: a\r\n b\r\n\r\n.leading dot\r\nlast\r\n"
	res := s.Send(t, SMTPTransaction{From: "a@example.com", To: []string{"b@example.org", "c@example.org"}, Data: []byte(data)})
	if res.End.Code != 250 || res.Mail.Code != 250 || len(res.Rcpt) != 2 {
		t.Fatalf("replies %+v, want 250s", res)
	}
	s.Send(t, SMTPTransaction{From: "", To: []string{"d@example.org"}, Data: []byte("Subject: second\n\nx\n")})

	msgs := sink.WaitForMessages(t, 2, 5*time.Second)
	first, second := msgs[0], msgs[1]
	if first.From != "a@example.com" || !slices.Equal(first.To, []string{"b@example.org", "c@example.org"}) || first.Helo != "client.test" {
		t.Errorf("first envelope %q %q helo %q", first.From, first.To, first.Helo)
	}
	if string(first.Data) != data {
		t.Errorf("first data %q, want %q", first.Data, data)
	}
	if got := first.Header("x-folded"); got != "a b" {
		t.Errorf("Header(x-folded) = %q, want %q", got, "a b")
	}
	if got := first.Header("Missing"); got != "" {
		t.Errorf("Header(Missing) = %q, want empty", got)
	}
	if second.From != "" || second.Header("Subject") != "second" || !strings.HasSuffix(string(second.Data), "x\r\n") {
		t.Errorf("second message %q %q %q", second.From, second.Header("Subject"), second.Data)
	}
}

// TestSwaksTranscriptParsing checks the reply helpers on a transcript in
// swaks's format.
func TestSwaksTranscriptParsing(t *testing.T) {
	r := SwaksResult{Transcript: strings.Join([]string{
		"=== Trying 127.0.0.1:25...",
		"<-  220 mta.test ESMTP",
		" -> EHLO vm",
		"<-  250-mta.test",
		"<-  250 CHUNKING",
		" -> MAIL FROM:<a@example.com>",
		"<-  250 2.1.0 Ok",
		" -> RCPT TO:<one@example.org>",
		"<-  250 2.1.5 Ok",
		" -> RCPT TO:<over@example.org>",
		"<** 452 4.5.3 Too many recipients",
		" -> DATA",
		"<-  354 End data",
		" -> Subject: x",
		" -> ",
		" -> ..dot-stuffed",
		" -> .",
		"<** 550 5.7.1 Rejected",
		" -> QUIT",
		"<-  221 2.0.0 Bye",
	}, "\n")}
	if got := r.RepliesTo("rcpt to:"); !slices.Equal(got, []string{"250 2.1.5 Ok", "452 4.5.3 Too many recipients"}) {
		t.Errorf("RepliesTo(rcpt) = %q", got)
	}
	if got := r.RepliesTo("EHLO"); !slices.Equal(got, []string{"250 CHUNKING"}) {
		t.Errorf("RepliesTo(EHLO) = %q", got)
	}
	if got := r.EndOfDataReply(); got != "550 5.7.1 Rejected" {
		t.Errorf("EndOfDataReply() = %q", got)
	}
	if got := r.ErrorReplies(); !slices.Equal(got, []string{"452 4.5.3 Too many recipients", "550 5.7.1 Rejected"}) {
		t.Errorf("ErrorReplies() = %q", got)
	}
	if got := len(r.ServerReplies()); got != 9 {
		t.Errorf("len(ServerReplies()) = %d, want 9", got)
	}
}

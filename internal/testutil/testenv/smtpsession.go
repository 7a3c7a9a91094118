package testenv

import (
	"bytes"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"
)

// SMTPReply is one SMTP server reply.
type SMTPReply struct {
	// Code is the three-digit reply code (0 when none was read).
	Code int
	// Text is the reply text; the lines of a multi-line reply are joined
	// with "\n". It starts with the enhanced status code when the server
	// sends one ("5.7.1 ...").
	Text string
}

// String renders the reply as "CODE TEXT" (first line of Text only).
func (r SMTPReply) String() string {
	first, _, _ := strings.Cut(r.Text, "\n")
	return fmt.Sprintf("%d %s", r.Code, first)
}

// Positive reports a 2xx or 3xx reply.
func (r SMTPReply) Positive() bool { return r.Code >= 200 && r.Code < 400 }

// SMTPTransaction is one message to send on an SMTPSession.
type SMTPTransaction struct {
	From string
	// MailParams are MAIL FROM parameters, e.g. "SMTPUTF8" for an
	// internationalised address (RFC 6531); "" for none.
	MailParams string
	To         []string
	// Data is the message (headers and body); line ends may be LF or CRLF.
	Data []byte
}

// SMTPTransactionResult holds every reply of one transaction. Later
// commands are not sent after a refusal that ends the transaction: Data
// and End stay zero when MAIL or all RCPTs were refused, End when DATA was.
type SMTPTransactionResult struct {
	Mail SMTPReply
	Rcpt []SMTPReply
	Data SMTPReply // reply to the DATA command (354 expected)
	End  SMTPReply // reply after the final "." (the message's fate)
}

// SMTPSession is a plain SMTP client connection for what swaks cannot do:
// XCLIENT followed by several transactions on one connection.
type SMTPSession struct {
	conn net.Conn
	tp   *textproto.Conn
	helo string
	// Greeting is the server's 220 greeting.
	Greeting SMTPReply
	// Ehlo is the reply to the last EHLO.
	Ehlo SMTPReply
}

// DialSMTP connects to addr, reads the greeting and sends EHLO helo. The
// connection is closed (QUIT) when the test ends. Every command has a 30s
// deadline.
func DialSMTP(t testing.TB, addr, helo string) *SMTPSession {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatalf("smtp: connect to %s: %v", addr, err)
	}
	s := &SMTPSession{conn: conn, tp: textproto.NewConn(conn), helo: helo}
	t.Cleanup(func() { s.Close() })
	s.Greeting = s.read(t)
	if s.Greeting.Code != 220 {
		t.Fatalf("smtp: %s greeted with %v", addr, s.Greeting)
	}
	s.Ehlo = s.Command(t, "EHLO "+helo)
	if s.Ehlo.Code != 250 {
		t.Fatalf("smtp: EHLO %s: %v", helo, s.Ehlo)
	}
	return s
}

// Command sends one command line and returns the reply.
func (s *SMTPSession) Command(t testing.TB, line string) SMTPReply {
	t.Helper()
	s.conn.SetDeadline(time.Now().Add(30 * time.Second))
	if err := s.tp.PrintfLine("%s", line); err != nil {
		t.Fatalf("smtp: send %q: %v", line, err)
	}
	return s.read(t)
}

// XClient sends "XCLIENT attrs" (e.g. "LOGIN=alice ADDR=192.0.2.7"); on
// success the server greets again, and the session repeats EHLO as the
// protocol requires. It returns the XCLIENT reply (220 on success).
func (s *SMTPSession) XClient(t testing.TB, attrs string) SMTPReply {
	t.Helper()
	r := s.Command(t, "XCLIENT "+attrs)
	if r.Code != 220 {
		return r
	}
	s.Ehlo = s.Command(t, "EHLO "+s.helo)
	if s.Ehlo.Code != 250 {
		t.Fatalf("smtp: EHLO after XCLIENT: %v", s.Ehlo)
	}
	return r
}

// Send runs one MAIL/RCPT/DATA transaction and returns every reply; a
// refusal is a result, not a test failure. After a refused transaction it
// sends RSET so the session can go on.
func (s *SMTPSession) Send(t testing.TB, tx SMTPTransaction) SMTPTransactionResult {
	t.Helper()
	var res SMTPTransactionResult
	mail := "MAIL FROM:<" + tx.From + ">"
	if tx.MailParams != "" {
		mail += " " + tx.MailParams
	}
	res.Mail = s.Command(t, mail)
	if !res.Mail.Positive() {
		s.Command(t, "RSET")
		return res
	}
	accepted := 0
	for _, rcpt := range tx.To {
		r := s.Command(t, "RCPT TO:<"+rcpt+">")
		res.Rcpt = append(res.Rcpt, r)
		if r.Positive() {
			accepted++
		}
	}
	if accepted == 0 {
		s.Command(t, "RSET")
		return res
	}
	res.Data = s.Command(t, "DATA")
	if res.Data.Code != 354 {
		s.Command(t, "RSET")
		return res
	}
	s.conn.SetDeadline(time.Now().Add(60 * time.Second))
	w := s.tp.DotWriter()
	data := bytes.ReplaceAll(tx.Data, []byte("\r\n"), []byte("\n"))
	if _, err := w.Write(data); err != nil {
		t.Fatalf("smtp: send message data: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("smtp: end message data: %v", err)
	}
	res.End = s.read(t)
	return res
}

// Close sends QUIT and closes the connection; calling it twice is harmless.
func (s *SMTPSession) Close() {
	if s.conn == nil {
		return
	}
	s.conn.SetDeadline(time.Now().Add(5 * time.Second))
	if s.tp.PrintfLine("QUIT") == nil {
		s.tp.ReadResponse(0)
	}
	s.tp.Close()
	s.conn = nil
}

func (s *SMTPSession) read(t testing.TB) SMTPReply {
	t.Helper()
	code, msg, err := s.tp.ReadResponse(0)
	if err != nil {
		if _, ok := err.(*textproto.Error); !ok {
			t.Fatalf("smtp: read reply: %v", err)
		}
	}
	return SMTPReply{Code: code, Text: msg}
}

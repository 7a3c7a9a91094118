package scoring_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/abusemilter/abusemilter/internal/dns"
	"github.com/abusemilter/abusemilter/scoring"
	"github.com/emersion/go-msgauth/dkim"
)

// signedMessage signs a message for d=signer.example and returns it with a
// resolver that publishes the key.
func signedMessage(t *testing.T, body string) ([]byte, *dns.Static) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw := "From: Dora <dora@signer.example>\r\nTo: bob@example.net\r\nSubject: signed\r\nDate: " + testDate + "\r\nMessage-ID: <s1@signer.example>\r\n\r\n" + body
	var out bytes.Buffer
	err = dkim.Sign(&out, strings.NewReader(raw), &dkim.SignOptions{
		Domain: "signer.example", Selector: "s1", Signer: priv,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
	})
	if err != nil {
		t.Fatal(err)
	}
	res := &dns.Static{Records: map[string][]string{
		"s1._domainkey.signer.example": {"v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)},
	}}
	return out.Bytes(), res
}

// stream parses a message and feeds its body to a DKIMStream in chunks.
func stream(t *testing.T, raw []byte, res scoring.Resolver, chunk int) (*scoring.Message, []scoring.DKIMResult) {
	t.Helper()
	m, err := scoring.ParseMessage(bytes.NewReader(raw), 1024)
	if err != nil {
		t.Fatal(err)
	}
	s := scoring.NewDKIMStream(context.Background(), res, m.Headers)
	body := raw[bytes.Index(raw, []byte("\r\n\r\n"))+4:]
	for len(body) > 0 {
		n := min(chunk, len(body))
		if _, err := s.Write(body[:n]); err != nil {
			t.Fatal(err)
		}
		body = body[n:]
	}
	return m, s.Finish()
}

func TestDKIMStreamVerifiesWholeBody(t *testing.T) {
	// A body far larger than the 1 KiB sample the parser keeps: a verifier
	// fed the sample would fail.
	body := strings.Repeat("All work and no play makes Jack a dull boy.\r\n", 100000)
	raw, res := signedMessage(t, body)
	m, results := stream(t, raw, res, 8192)
	if !m.BodyTruncated {
		t.Fatal("test body should exceed the sample")
	}
	if len(results) != 1 || !results[0].Verified || results[0].Domain != "signer.example" {
		t.Fatalf("results = %+v, want one verified signature of signer.example", results)
	}
	// The account may not send as signer.example: a replayed signature.
	m.DKIM = results
	acct := testAccounts(t)["hosting"]
	v := testEngine(t, nil).Decide(context.Background(), &scoring.Envelope{AuthLogin: "hosting", MailFrom: "x@hosting.example", Rcpts: []string{"b@example.net"}}, m, acct)
	if !hasRule(v, scoring.RuleDKIMForeign) || !strings.Contains(reasonOf(v, scoring.RuleDKIMForeign), "verified: a replayed signature") {
		t.Fatalf("findings %v, want DKIM_FOREIGN_SIGNATURE with a verified signature", findingReasons(v))
	}
}

func TestDKIMStreamTamperedBodyFails(t *testing.T) {
	raw, res := signedMessage(t, "Pay invoice 100 EUR\r\n")
	raw = bytes.Replace(raw, []byte("100 EUR"), []byte("900 EUR"), 1)
	_, results := stream(t, raw, res, 3)
	if len(results) != 1 || results[0].Verified || results[0].Err == "" {
		t.Fatalf("results = %+v, want one failed signature", results)
	}
}

func TestDKIMStreamBareLFBody(t *testing.T) {
	raw, res := signedMessage(t, "line one\r\nline two\r\n")
	lf := bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n"))
	m, err := scoring.ParseMessage(bytes.NewReader(lf), 1024)
	if err != nil {
		t.Fatal(err)
	}
	s := scoring.NewDKIMStream(context.Background(), res, m.Headers)
	s.Write([]byte("line one\nline two\n"))
	if r := s.Finish(); len(r) != 1 || !r[0].Verified {
		t.Fatalf("results = %+v, want verified after LF to CRLF", r)
	}
}

func TestDKIMStreamNotVerified(t *testing.T) {
	raw, res := signedMessage(t, "hello\r\n")
	m, _ := scoring.ParseMessage(bytes.NewReader(raw), 1024)

	if r := scoring.NewDKIMStream(context.Background(), nil, m.Headers).Finish(); r != nil {
		t.Errorf("nil resolver: results %+v, want nil (not verified)", r)
	}
	unsigned := parse(t, message(aliceFrom, "", "hi\n"))
	if r := scoring.NewDKIMStream(context.Background(), res, unsigned.Headers).Finish(); r == nil || len(r) != 0 {
		t.Errorf("unsigned message: results %+v, want empty and non-nil", r)
	}
	// A key server that never answers: the lookup times out, the stream
	// still finishes, and the signature is not counted as verified.
	hang := &dns.Static{Hang: map[string]bool{"s1._domainkey.signer.example": true}}
	s := scoring.NewDKIMStream(context.Background(), hang, m.Headers)
	s.Write([]byte("hello\r\n"))
	if r := s.Finish(); len(r) == 1 && r[0].Verified {
		t.Errorf("hanging DNS: results %+v, want no verified signature", r)
	}
	// An abandoned stream returns at once and reports nothing.
	s = scoring.NewDKIMStream(context.Background(), res, m.Headers)
	s.Write([]byte("hel"))
	s.Close()
	if r := s.Finish(); r != nil {
		t.Errorf("abandoned stream: results %+v, want nil", r)
	}
}

func reasonOf(v scoring.Verdict, id string) string {
	for _, f := range v.Findings {
		if f.Rule == id {
			return f.Reason
		}
	}
	return ""
}

// simpleSigned signs, with c=simple/simple and d=signer.example, a message
// whose fields are written as a careless client writes them: a tab after one
// colon, no space after another, a folded Subject. It returns the message
// and a resolver that publishes the key.
func simpleSigned(t *testing.T) ([]byte, *dns.Static) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw := "From: Dora <dora@signer.example>\r\n" +
		"To:\tbob@example.net\r\n" +
		"Subject: a subject long enough\r\n  to be folded\r\n" +
		"X-Tight:value\r\n" +
		"Date: " + testDate + "\r\n\r\nbody\r\n"
	var out bytes.Buffer
	err = dkim.Sign(&out, strings.NewReader(raw), &dkim.SignOptions{
		Domain: "signer.example", Selector: "s1", Signer: priv,
		HeaderCanonicalization: dkim.CanonicalizationSimple, BodyCanonicalization: dkim.CanonicalizationSimple,
		HeaderKeys: []string{"From", "To", "Subject", "X-Tight", "Date"},
	})
	if err != nil {
		t.Fatal(err)
	}
	res := &dns.Static{Records: map[string][]string{
		"s1._domainkey.signer.example": {"v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)},
	}}
	return out.Bytes(), res
}

// exactFields splits a message's header block into fields whose values are
// the text after the colon, untouched, with folded lines ending in a bare
// LF as Postfix sends them to a milter.
func exactFields(t *testing.T, raw []byte) []scoring.Header {
	t.Helper()
	head, _, ok := strings.Cut(string(raw), "\r\n\r\n")
	if !ok {
		t.Fatal("message has no end of header")
	}
	var out []scoring.Header
	for _, line := range strings.Split(head, "\r\n") {
		if line[0] == ' ' || line[0] == '\t' {
			out[len(out)-1].Value += "\n" + line
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("header line without a colon: %q", line)
		}
		out = append(out, scoring.Header{Name: name, Value: value})
	}
	return out
}

func TestDKIMStreamRawVerifiesSimpleCanonicalization(t *testing.T) {
	raw, res := simpleSigned(t)
	body := raw[bytes.Index(raw, []byte("\r\n\r\n"))+4:]
	finish := func(s *scoring.DKIMStream) []scoring.DKIMResult {
		if _, err := s.Write(body); err != nil {
			t.Fatal(err)
		}
		return s.Finish()
	}
	got := finish(scoring.NewDKIMStreamRaw(context.Background(), res, exactFields(t, raw)))
	if len(got) != 1 || !got[0].Verified || got[0].Domain != "signer.example" {
		t.Fatalf("exact fields: %+v, want signer.example verified", got)
	}

	// Near miss: the parsed values lose the whitespace after the colon, and
	// Name ": " Value is not what a simple signer hashed for To and X-Tight.
	m, err := scoring.ParseMessage(bytes.NewReader(raw), 1024)
	if err != nil {
		t.Fatal(err)
	}
	got = finish(scoring.NewDKIMStream(context.Background(), res, m.Headers))
	if len(got) != 1 || got[0].Verified || got[0].Err == "" {
		t.Fatalf("parsed values: %+v, want signer.example failing verification", got)
	}
}

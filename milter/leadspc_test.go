package milter_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"
	"github.com/emersion/go-msgauth/dkim"

	"github.com/abusemilter/abusemilter/internal/dns"
	"github.com/abusemilter/abusemilter/milter"
	"github.com/abusemilter/abusemilter/scoring"
)

// optLeadSpace is SMFIP_HDR_LEADSPC as it goes over the wire.
const optLeadSpace = uint32(gomilter.OptHeaderLeadingSpace)

// negotiateOffering sends an OPTNEG as an MTA of protocol version 6 that
// offers the header actions and the protocol options proto, and returns
// the milter's answer: its version and the protocol options it asks for.
func (p *rawPeer) negotiateOffering(proto uint32) (version, asked uint32) {
	p.t.Helper()
	p.send(cmdOptNeg, be32(6), be32(0x1|0x10), be32(proto))
	code, data := p.read()
	if code != cmdOptNeg || len(data) < 12 {
		p.t.Fatalf("negotiation answered with %q and %d bytes, want 'O' and at least 12", code, len(data))
	}
	p.agreed = binary.BigEndian.Uint32(data[8:])
	return binary.BigEndian.Uint32(data), p.agreed
}

func TestLeadingSpaceAskedOnlyWhenOffered(t *testing.T) {
	h := start(t, milter.Options{Engine: newEngine(t, baseConfig)})
	for _, tc := range []struct {
		name    string
		offered uint32
		want    uint32
		version uint32
	}{
		// Sendmail drops a milter that asks for an option it did not offer.
		{"not offered", 0, 0, 2},
		{"offered alone", optLeadSpace, optLeadSpace, 6},
		// Postfix 3.x with milter_protocol = 6 offers every v6 option; the
		// milter asks for leading space and for the skip and no-reply
		// options of milter.Protocol.
		{"all of version 6 offered", 0x1fffff, uint32(milter.Protocol), 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := dialRaw(t, h.addr)
			version, asked := p.negotiateOffering(tc.offered)
			if asked != tc.want || version != tc.version {
				t.Fatalf("offered 0x%x: milter answered version %d, options 0x%x; want version %d, options 0x%x", tc.offered, version, asked, tc.version, tc.want)
			}
			// The session goes on after the negotiation.
			if r := p.connect("192.0.2.10"); r.code != 'c' {
				t.Fatalf("connect after negotiation: %q, want continue", r.code)
			}
		})
	}
}

// signedForAlice returns a message from alice@example.com signed for
// d=example.com (a domain alice may send as) with canonicalization c for
// both header and body, and a resolver that publishes the key. Its fields
// are written the ways DKIM simple canonicalization is fragile about: a tab
// after the colon (To), a folded field (Subject), several spaces (X-Spaces).
func signedForAlice(t testing.TB, c dkim.Canonicalization) ([]byte, *dns.Static) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw := "From: Alice <alice@example.com>\r\n" +
		"To:\tbob@example.org\r\n" +
		"Subject: the quarterly figures, as promised\r\n\tand the minutes\r\n" +
		"X-Spaces:   three\r\n" +
		"Date: " + time.Now().Format(time.RFC1123Z) + "\r\n" +
		fmt.Sprintf("Message-Id: <%d.dkim@example.com>\r\n", msgSeq.Add(1)) +
		"\r\nHello Bob,\r\n\r\nthe figures.\r\n"
	var out bytes.Buffer
	err = dkim.Sign(&out, strings.NewReader(raw), &dkim.SignOptions{
		Domain: "example.com", Selector: "s1", Signer: priv,
		HeaderCanonicalization: c, BodyCanonicalization: c,
		HeaderKeys: []string{"From", "To", "Subject", "X-Spaces", "Date", "Message-Id"},
	})
	if err != nil {
		t.Fatalf("signing with c=%s: %v", c, err)
	}
	res := &dns.Static{Records: map[string][]string{
		"s1._domainkey.example.com": {"v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)},
	}}
	return out.Bytes(), res
}

// mtaHeaders splits a message as Postfix's milter8_header (milter8.c) sends
// it to a milter: the name before the colon, the value after it with the
// lines of a folded field joined by a bare "\n", and, unless the milter
// negotiated SMFIP_HDR_LEADSPC, one leading space removed. It returns the
// fields and the body.
func mtaHeaders(t testing.TB, raw []byte, leadingSpace bool) ([][2]string, string) {
	t.Helper()
	head, body, ok := strings.Cut(string(raw), "\r\n\r\n")
	if !ok {
		t.Fatal("message has no end of header")
	}
	var fields [][2]string
	for _, line := range strings.Split(head, "\r\n") {
		if line[0] == ' ' || line[0] == '\t' {
			fields[len(fields)-1][1] += "\n" + line
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("header line without a colon: %q", line)
		}
		fields = append(fields, [2]string{name, value})
	}
	if !leadingSpace {
		for i := range fields {
			fields[i][1] = strings.TrimPrefix(fields[i][1], " ")
		}
	}
	return fields, body
}

// seenMessage is what the engine was given at end of message.
type seenMessage struct {
	sinkFields [][2]string          // the fields as the body sink received them
	headers    []scoring.Header     // Message.Headers: what the rules see
	dkim       []scoring.DKIMResult // Message.DKIM
}

// recordingSink passes everything to the daemon's DKIM sink and records the
// message as the engine receives it (the same *scoring.Message).
type recordingSink struct {
	milter.BodySink
	fields [][2]string
	seen   chan<- seenMessage
}

func (r *recordingSink) Header(name, value string) {
	r.fields = append(r.fields, [2]string{name, value})
	r.BodySink.Header(name, value)
}

func (r *recordingSink) Finish(ctx context.Context, env *scoring.Envelope, msg *scoring.Message) {
	r.BodySink.Finish(ctx, env, msg)
	r.seen <- seenMessage{sinkFields: r.fields, headers: append([]scoring.Header(nil), msg.Headers...), dkim: msg.DKIM}
}

// startDKIM serves a milter whose body sink is the daemon's DKIM sink over
// res, recording every message it finishes.
func startDKIM(t testing.TB, engineYAML string, res scoring.Resolver) (*harness, <-chan seenMessage) {
	t.Helper()
	seen := make(chan seenMessage, 4)
	dkimSink := milter.DKIMSink(res)
	h := start(t, milter.Options{
		Engine: newEngine(t, engineYAML),
		NewBodySink: func(env *scoring.Envelope) milter.BodySink {
			return &recordingSink{BodySink: dkimSink(env), seen: seen}
		},
	})
	return h, seen
}

// sendLeadingSpace runs one transaction from alice as Postfix does after
// negotiating SMFIP_HDR_LEADSPC, and returns the end-of-message reply.
func sendLeadingSpace(t testing.TB, addr string, fields [][2]string, body string) reply {
	t.Helper()
	p := dialRaw(t, addr)
	if _, asked := p.negotiateOffering(0x1fffff); asked&optLeadSpace == 0 {
		t.Fatalf("milter did not ask for SMFIP_HDR_LEADSPC: options 0x%x", asked)
	}
	for _, step := range []struct {
		name string
		r    reply
	}{
		{"connect", p.connect("192.0.2.10")},
		{"mail", p.mail("alice@example.com", "alice")},
		{"rcpt", p.command(cmdRcpt, cstr("<bob@example.org>"))},
	} {
		if step.r.code != 'c' {
			t.Fatalf("%s: %q %s, want continue", step.name, step.r.code, step.r.text)
		}
	}
	for _, f := range fields {
		if r := p.header(f[0], f[1]); r.code != 'c' {
			t.Fatalf("header %s: %q, want continue", f[0], r.code)
		}
	}
	if r := p.command(cmdEOH); r.code != 'c' {
		t.Fatalf("end of headers: %q, want continue", r.code)
	}
	if r := p.command(cmdBody, []byte(body)); r.code != 'c' {
		t.Fatalf("body: %q, want continue", r.code)
	}
	end := p.command(cmdEOB)
	p.send(cmdAbort)
	return end
}

// sendPlain runs the same transaction through go-milter's client, which
// offers no protocol option: the fields must already be trimmed as an MTA
// trims them without SMFIP_HDR_LEADSPC.
func sendPlain(t testing.TB, h *harness, fields [][2]string, body string) result {
	t.Helper()
	s := h.session(t)
	if s.ProtocolOpts != 0 {
		t.Fatalf("client without options negotiated 0x%x", s.ProtocolOpts)
	}
	connect(t, s, "192.0.2.10")
	return send(t, s, message{
		login: "alice", client: "192.0.2.10", from: "alice@example.com",
		rcpts: []string{"bob@example.org"}, headers: fields, body: body,
	})
}

func verifiedFor(results []scoring.DKIMResult, domain string) bool {
	return len(results) == 1 && results[0].Domain == domain && results[0].Verified
}

func TestDKIMVerifiesWithLeadingSpace(t *testing.T) {
	for _, c := range []dkim.Canonicalization{dkim.CanonicalizationSimple, dkim.CanonicalizationRelaxed} {
		t.Run(string(c), func(t *testing.T) {
			raw, res := signedForAlice(t, c)
			h, seen := startDKIM(t, baseConfig, res)
			fields, body := mtaHeaders(t, raw, true)
			if end := sendLeadingSpace(t, h.addr, fields, body); end.code != 'a' {
				t.Fatalf("end of message: %q %s, want accept", end.code, end.text)
			}
			got := <-seen
			if !verifiedFor(got.dkim, "example.com") {
				t.Fatalf("c=%s/%s: engine saw DKIM %+v, want example.com verified", c, c, got.dkim)
			}
			if !reflect.DeepEqual(got.sinkFields, fields) {
				t.Fatalf("the DKIM sink got\n%q\nwant the fields as in the message\n%q", got.sinkFields, fields)
			}
		})
	}
}

func TestDKIMWithoutLeadingSpaceKeepsRuleValues(t *testing.T) {
	for _, tc := range []struct {
		c dkim.Canonicalization
		// Without SMFIP_HDR_LEADSPC the field "To:\tbob" reaches the milter
		// as "\tbob", rebuilt as "To: \tbob": simple fails, relaxed holds.
		verifiedWithout bool
	}{
		{dkim.CanonicalizationSimple, false},
		{dkim.CanonicalizationRelaxed, true},
	} {
		t.Run(string(tc.c), func(t *testing.T) {
			raw, res := signedForAlice(t, tc.c)
			h, seen := startDKIM(t, baseConfig, res)

			exact, body := mtaHeaders(t, raw, true)
			if end := sendLeadingSpace(t, h.addr, exact, body); end.code != 'a' {
				t.Fatalf("with SMFIP_HDR_LEADSPC: end of message %q %s, want accept", end.code, end.text)
			}
			with := <-seen

			trimmed, _ := mtaHeaders(t, raw, false)
			if r := sendPlain(t, h, trimmed, body); r.end.Code != gomilter.ActAccept {
				t.Fatalf("without SMFIP_HDR_LEADSPC: end of message %q %d %s, want accept", r.end.Code, r.end.SMTPCode, r.end.SMTPText)
			}
			without := <-seen

			if !reflect.DeepEqual(with.headers, without.headers) {
				t.Fatalf("rules saw different header values:\nwith the option    %q\nwithout the option %q", with.headers, without.headers)
			}
			if verifiedFor(without.dkim, "example.com") != tc.verifiedWithout {
				t.Fatalf("c=%s without SMFIP_HDR_LEADSPC: DKIM %+v, want verified=%v", tc.c, without.dkim, tc.verifiedWithout)
			}
			if !tc.verifiedWithout && (len(without.dkim) != 1 || without.dkim[0].Err == "") {
				t.Fatalf("c=%s without SMFIP_HDR_LEADSPC: DKIM %+v, want one failed result with its error", tc.c, without.dkim)
			}
		})
	}
}

func TestRuleValuesTrimmedWithLeadingSpace(t *testing.T) {
	h, seen := startDKIM(t, "mode: monitor\n"+baseConfig, &dns.Static{})
	date := time.Now().Format(time.RFC1123Z)
	// As the MTA sends them with SMFIP_HDR_LEADSPC, and what the rules must
	// see: the one space after the colon removed, nothing else.
	cases := []struct{ name, sent, rules string }{
		{"From", " alice@example.com", "alice@example.com"},
		{"Date", " " + date, date},
		{"Subject", "  two spaces", " two spaces"},
		{"X-Tab", "\ttab", "\ttab"},
		{"X-Tight", "tight", "tight"},
		{"X-Empty", "", ""},
		{"X-Folded", " first\n\tsecond", "first\n\tsecond"},
		{milter.HeaderVerdict, " accept; forged by the client", "accept; forged by the client"},
	}
	var sent, rules [][2]string
	for _, c := range cases {
		sent = append(sent, [2]string{c.name, c.sent})
		rules = append(rules, [2]string{c.name, c.rules})
	}
	end := sendLeadingSpace(t, h.addr, sent, "hello\r\n")
	got := <-seen
	var gotRules [][2]string
	for _, hd := range got.headers {
		gotRules = append(gotRules, [2]string{hd.Name, hd.Value})
	}
	if !reflect.DeepEqual(gotRules, rules) {
		t.Fatalf("rules saw\n%q\nwant\n%q", gotRules, rules)
	}
	if !reflect.DeepEqual(got.sinkFields, sent) {
		t.Fatalf("the body sink got\n%q\nwant the values as sent\n%q", got.sinkFields, sent)
	}

	// The client's X-Abuse-Verdict is deleted (an empty value, never a
	// space), and the milter's own headers carry the space the MTA no
	// longer writes after the colon.
	if end.code != 'a' {
		t.Fatalf("end of message: %q, want accept", end.code)
	}
	var deleted, added []string
	for _, m := range end.mods {
		parts := strings.Split(string(m.data), "\x00")
		switch m.code {
		case 'm':
			parts = strings.Split(string(m.data[4:]), "\x00")
			deleted = append(deleted, fmt.Sprintf("%s=%q", parts[0], parts[1]))
		case 'h':
			added = append(added, parts[0])
			if !strings.HasPrefix(parts[1], " ") || strings.HasPrefix(parts[1], "  ") {
				t.Errorf("added %s value %q, want exactly one leading space", parts[0], parts[1])
			}
		}
	}
	if want := []string{milter.HeaderVerdict + `=""`}; !reflect.DeepEqual(deleted, want) {
		t.Fatalf("header changes %q, want %q", deleted, want)
	}
	if len(added) == 0 || added[0] != milter.HeaderVerdict {
		t.Fatalf("headers added %q, want %s first", added, milter.HeaderVerdict)
	}

	// The same fields from an MTA without the option (which removed the
	// space itself): the rules see the same values, the added headers have
	// no leading space.
	var plain [][2]string
	for _, c := range cases {
		plain = append(plain, [2]string{c.name, strings.TrimPrefix(c.sent, " ")})
	}
	r := sendPlain(t, h, plain, "hello\r\n")
	got = <-seen
	gotRules = gotRules[:0]
	for _, hd := range got.headers {
		gotRules = append(gotRules, [2]string{hd.Name, hd.Value})
	}
	if !reflect.DeepEqual(gotRules, rules) {
		t.Fatalf("without the option rules saw\n%q\nwant\n%q", gotRules, rules)
	}
	for _, m := range r.mods {
		if m.Code == gomilter.ActAddHeader && strings.HasPrefix(m.HeaderValue, " ") {
			t.Errorf("without the option, added %s value %q has a leading space", m.HeaderName, m.HeaderValue)
		}
	}
}

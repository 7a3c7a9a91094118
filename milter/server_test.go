package milter_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/abusemilter/abusemilter/milter"
	"github.com/abusemilter/abusemilter/scoring"
)

const rejectFromText = "5.7.1 Rejected under the e-mail abuse policy (impersonation: FROM_DOMAIN_NOT_OWNED)"

func TestAccept(t *testing.T) {
	h := start(t, milter.Options{Engine: newEngine(t, baseConfig)})
	s := h.session(t)
	connect(t, s, "192.0.2.10")
	r := send(t, s, alice("Alice <alice@example.com>", "bob@example.org"))
	if r.end.Code != gomilter.ActAccept {
		t.Fatalf("end: %q %d %s, want accept", r.end.Code, r.end.SMTPCode, r.end.SMTPText)
	}
	if len(r.mods) != 0 {
		t.Fatalf("enforce mode changed an accepted message: %+v", r.mods)
	}
	d := h.logs.decisions(t)
	if len(d) != 1 {
		t.Fatalf("%d decision lines, want 1: %s", len(d), h.logs)
	}
	for k, want := range map[string]any{"account": "alice", "identified_by": "login", "client": "192.0.2.10", "mail_from": "alice@example.com", "rcpts": 1.0, "action": "accept", "code": 250.0, "queue_id": "QID", "monitor": false} {
		if d[0][k] != want {
			t.Errorf("decision %s = %v, want %v", k, d[0][k], want)
		}
	}
	if _, ok := d[0]["ms"]; !ok {
		t.Errorf("decision line has no latency: %v", d[0])
	}
}

func TestRejectFromNotOwned(t *testing.T) {
	h := start(t, milter.Options{Engine: newEngine(t, baseConfig)})
	s := h.session(t)
	connect(t, s, "192.0.2.10")
	r := send(t, s, alice("PayPal <service@paypal.com>", "bob@example.org"))
	if r.end.Code != gomilter.ActReplyCode || r.end.SMTPCode != 550 || r.end.SMTPText != rejectFromText {
		t.Fatalf("end: %q %d %q, want 550 %q", r.end.Code, r.end.SMTPCode, r.end.SMTPText, rejectFromText)
	}
	d := h.logs.decisions(t)
	if len(d) != 1 || d[0]["action"] != "reject" || d[0]["rule"] != scoring.RuleFromNotOwned || d[0]["score"] != 10.0 {
		t.Fatalf("decision lines: %v", d)
	}
}

func TestDeferRateLimit(t *testing.T) {
	cfg := strings.Replace(baseConfig, `["100/1h"]`, `["1/1h"]`, 1)
	h := start(t, milter.Options{Engine: newEngine(t, cfg)})
	s := h.session(t)
	connect(t, s, "192.0.2.10")
	if r := send(t, s, alice("alice@example.com", "bob@example.org")); r.end.Code != gomilter.ActAccept {
		t.Fatalf("first message: %q %d %s", r.end.Code, r.end.SMTPCode, r.end.SMTPText)
	}
	r := send(t, s, alice("alice@example.com", "bob@example.org"))
	if r.end.Code != gomilter.ActReplyCode || r.end.SMTPCode != 451 || !strings.HasPrefix(r.end.SMTPText, "4.7.1 Deferred under the e-mail abuse policy (spam-volume: ACCOUNT_MSG_RATE 1/1h") {
		t.Fatalf("second message: %q %d %q, want 451 ACCOUNT_MSG_RATE", r.end.Code, r.end.SMTPCode, r.end.SMTPText)
	}
	// The limiter remembers the refusal: the third message is refused at
	// MAIL FROM, before its body is sent.
	r = send(t, s, alice("alice@example.com", "bob@example.org"))
	if r.mail.Code != gomilter.ActReplyCode || r.mail.SMTPCode != 451 || !strings.Contains(r.mail.SMTPText, "ACCOUNT_MSG_RATE") {
		t.Fatalf("third message at MAIL: %q %d %q, want 451", r.mail.Code, r.mail.SMTPCode, r.mail.SMTPText)
	}
	d := h.logs.decisions(t)
	if len(d) != 3 || d[2]["stage"] != "mail" || d[2]["action"] != "defer" || d[2]["code"] != 451.0 {
		t.Fatalf("decision lines: %v", d)
	}
}

func TestRecipientCap(t *testing.T) {
	h := start(t, milter.Options{Engine: newEngine(t, baseConfig)})
	s := h.session(t)
	connect(t, s, "192.0.2.10")
	r := send(t, s, alice("alice@example.com", "a@example.org", "b@example.org", "c@example.org", "d@example.org"))
	for i, a := range r.rcpts {
		if i < 2 && a.Code != gomilter.ActContinue {
			t.Fatalf("rcpt %d: %q %d %s, want continue", i+1, a.Code, a.SMTPCode, a.SMTPText)
		}
		if i >= 2 && (a.Code != gomilter.ActReplyCode || a.SMTPCode != 452 || !strings.HasPrefix(a.SMTPText, "4.5.3 Too many recipients")) {
			t.Fatalf("rcpt %d: %q %d %q, want 452 4.5.3", i+1, a.Code, a.SMTPCode, a.SMTPText)
		}
	}
	// The refusals did not drop the transaction: the message itself is
	// still checked, as alice's, and accepted.
	if r.end.Code != gomilter.ActAccept {
		t.Fatalf("end: %q %d %s, want accept", r.end.Code, r.end.SMTPCode, r.end.SMTPText)
	}
	d := h.logs.decisions(t)
	last := d[len(d)-1]
	if last["stage"] != "eom" || last["account"] != "alice" || last["rcpts"] != 2.0 || last["rcpts_refused"] != 2.0 {
		t.Fatalf("end-of-message decision: %v", last)
	}
	// The next message on the same connection starts from zero recipients.
	r = send(t, s, alice("alice@example.com", "e@example.org", "f@example.org"))
	if r.rcpts[1].Code != gomilter.ActContinue || r.end.Code != gomilter.ActAccept {
		t.Fatalf("next message: rcpt %q, end %q %s", r.rcpts[1].Code, r.end.Code, r.end.SMTPText)
	}
}

func TestMessagesOnOneConnectionDoNotLeak(t *testing.T) {
	h := start(t, milter.Options{Engine: newEngine(t, baseConfig)})
	s := h.session(t)
	connect(t, s, "192.0.2.10")
	first := alice("alice@example.com", "a@example.org", "b@example.org")
	first.headers = append(first.headers, [2]string{"X-Extra", "1"})
	if r := send(t, s, first); r.end.Code != gomilter.ActAccept {
		t.Fatalf("first: %q %s", r.end.Code, r.end.SMTPText)
	}
	// The second message's MAIL stage carries no login or client macro:
	// the connection state from the first one must still apply (go-milter
	// would otherwise have replaced the backend after the accept).
	second := alice("Mallory <ceo@bank.example>", "c@example.org")
	second.login, second.client = "", ""
	r := send(t, s, second)
	if r.end.Code != gomilter.ActReplyCode || r.end.SMTPCode != 550 {
		t.Fatalf("second: %q %d %s, want 550 for alice sending as bank.example", r.end.Code, r.end.SMTPCode, r.end.SMTPText)
	}
	third := alice("alice@example.com", "d@example.org")
	third.login, third.client = "", ""
	if r := send(t, s, third); r.end.Code != gomilter.ActAccept {
		t.Fatalf("third: %q %s: state of the rejected message leaked", r.end.Code, r.end.SMTPText)
	}
	d := h.logs.decisions(t)
	if len(d) != 3 {
		t.Fatalf("%d decisions, want 3", len(d))
	}
	for i, want := range []float64{2, 1, 1} {
		if d[i]["rcpts"] != want || d[i]["account"] != "alice" || d[i]["client"] != "192.0.2.10" {
			t.Errorf("message %d: rcpts=%v account=%v client=%v, want %v alice 192.0.2.10", i+1, d[i]["rcpts"], d[i]["account"], d[i]["client"], want)
		}
	}
}

func TestAbortMidMessage(t *testing.T) {
	h := start(t, milter.Options{Engine: newEngine(t, baseConfig)})
	s := h.session(t)
	connect(t, s, "192.0.2.10")
	m := alice("alice@example.com", "a@example.org")
	mailFrom(t, s, m)
	mustContinue(t, "rcpt")(s.Rcpt("a@example.org", nil))
	mustContinue(t, "header")(s.HeaderField("From", "PayPal <service@paypal.com>"))
	abort(t, s)
	// A forged From from the aborted message must not reach the next one.
	next := alice("alice@example.com", "b@example.org")
	next.headers = nil
	if r := send(t, s, next); r.end.Code != gomilter.ActAccept {
		t.Fatalf("after abort: %q %d %s", r.end.Code, r.end.SMTPCode, r.end.SMTPText)
	}
	if d := h.logs.decisions(t); len(d) != 1 || d[0]["rcpts"] != 1.0 {
		t.Fatalf("decisions after abort: %v", d)
	}
}

func TestMonitorMode(t *testing.T) {
	h := start(t, milter.Options{Engine: newEngine(t, "mode: monitor\n"+baseConfig)})
	s := h.session(t)
	connect(t, s, "192.0.2.10")
	m := alice("PayPal <service@paypal.com>", "a@example.org", "b@example.org", "c@example.org")
	m.headers = append(m.headers, [2]string{"X-Abuse-Verdict", "accept; forged by the client"})
	r := send(t, s, m)
	if r.end.Code != gomilter.ActAccept {
		t.Fatalf("monitor mode refused: %q %d %s", r.end.Code, r.end.SMTPCode, r.end.SMTPText)
	}
	if r.rcpts[2].Code != gomilter.ActContinue {
		t.Fatalf("monitor mode refused a recipient: %q %s", r.rcpts[2].Code, r.rcpts[2].SMTPText)
	}
	var added = map[string]string{}
	var removed []string
	for _, mod := range r.mods {
		switch mod.Code {
		case gomilter.ActAddHeader:
			added[mod.HeaderName] = mod.HeaderValue
		case gomilter.ActChangeHeader:
			removed = append(removed, mod.HeaderName)
		}
	}
	if got, want := added[milter.HeaderVerdict], "reject; rule=FROM_DOMAIN_NOT_OWNED; clause=impersonation; score=10; code=550"; got != want {
		t.Errorf("%s = %q, want %q", milter.HeaderVerdict, got, want)
	}
	if got, want := added[milter.HeaderFindings], "FROM_DOMAIN_NOT_OWNED=10"; got != want {
		t.Errorf("%s = %q, want %q", milter.HeaderFindings, got, want)
	}
	if len(removed) != 1 || removed[0] != milter.HeaderVerdict {
		t.Errorf("removed %v, want the client's X-Abuse-Verdict", removed)
	}
	if d := h.logs.decisions(t); len(d) != 1 || d[0]["monitor"] != true || d[0]["action"] != "reject" {
		t.Fatalf("decision: %v", d)
	}
}

func TestRemovesClientAbuseHeaders(t *testing.T) {
	h := start(t, milter.Options{Engine: newEngine(t, baseConfig)})
	s := h.session(t)
	connect(t, s, "192.0.2.10")
	m := alice("alice@example.com", "a@example.org")
	m.headers = append(m.headers,
		[2]string{"X-Abuse-Verdict", "accept"},
		[2]string{"x-abuse-findings", "NONE=0"},
		[2]string{"X-ABUSE-VERDICT", "accept\r\n\tagain"})
	r := send(t, s, m)
	if r.end.Code != gomilter.ActAccept {
		t.Fatalf("end: %q %s", r.end.Code, r.end.SMTPText)
	}
	var got []string
	for _, mod := range r.mods {
		if mod.Code != gomilter.ActChangeHeader || mod.HeaderValue != "" {
			t.Fatalf("unexpected modification in enforce mode: %+v", mod)
		}
		got = append(got, mod.HeaderName+"#"+string(rune('0'+mod.HeaderIndex)))
	}
	want := "X-Abuse-Verdict#2 X-Abuse-Verdict#1 X-Abuse-Findings#1"
	if strings.Join(got, " ") != want {
		t.Fatalf("header removals %v, want %s (last first, 1-based per name)", got, want)
	}
}

func TestEngineSwapKeepsMessageEngine(t *testing.T) {
	h := start(t, milter.Options{Engine: newEngine(t, baseConfig)})
	s := h.session(t)
	connect(t, s, "192.0.2.10")
	m := alice("PayPal <service@paypal.com>", "a@example.org")
	mailFrom(t, s, m)
	mustContinue(t, "rcpt")(s.Rcpt("a@example.org", nil))
	monitor := newEngine(t, "mode: monitor\n"+baseConfig)
	h.srv.SetEngine(monitor)
	if h.srv.Engine() != monitor {
		t.Fatal("Engine() does not return the new engine")
	}
	for _, hd := range m.headers {
		mustContinue(t, "header")(s.HeaderField(hd[0], hd[1]))
	}
	_, end, err := s.BodyReadFrom(strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	if end.Code != gomilter.ActReplyCode || end.SMTPCode != 550 {
		t.Fatalf("message started under enforce mode: %q %d, want 550", end.Code, end.SMTPCode)
	}
	abort(t, s)
	if r := send(t, s, m); r.end.Code != gomilter.ActAccept || len(r.mods) == 0 {
		t.Fatalf("next message under the monitor engine: %q mods %d, want accept with headers", r.end.Code, len(r.mods))
	}
}

// countingSink records what a BodySink sees.
type countingSink struct {
	headers  int
	bytes    int64
	finished chan *scoring.Message
}

func (c *countingSink) Header(string, string)       { c.headers++ }
func (c *countingSink) Write(p []byte) (int, error) { c.bytes += int64(len(p)); return len(p), nil }
func (c *countingSink) Abort()                      {}
func (c *countingSink) Finish(_ context.Context, _ *scoring.Envelope, m *scoring.Message) {
	m.DKIM = []scoring.DKIMResult{{Domain: "example.com", Verified: true}}
	c.finished <- m
}

func TestBodySinkAndSample(t *testing.T) {
	sink := &countingSink{finished: make(chan *scoring.Message, 1)}
	h := start(t, milter.Options{
		Engine:      newEngine(t, baseConfig),
		BodySample:  1000,
		NewBodySink: func(*scoring.Envelope) milter.BodySink { return sink },
	})
	s := h.session(t)
	connect(t, s, "192.0.2.10")
	m := alice("alice@example.com", "a@example.org")
	m.body = strings.Repeat("0123456789abcdef", 20000) // 320,000 bytes, several chunks
	if r := send(t, s, m); r.end.Code != gomilter.ActAccept {
		t.Fatalf("end: %q %s", r.end.Code, r.end.SMTPText)
	}
	msg := <-sink.finished
	if sink.bytes != int64(len(m.body)) || sink.headers != len(m.headers) {
		t.Fatalf("sink saw %d bytes %d headers, want %d %d", sink.bytes, sink.headers, len(m.body), len(m.headers))
	}
	if len(msg.Body) != 1000 || msg.BodySize != int64(len(m.body)) || !msg.BodyTruncated {
		t.Fatalf("sample %d bytes, size %d, truncated %v", len(msg.Body), msg.BodySize, msg.BodyTruncated)
	}
}

// rawConn dials the milter without the client library.
func rawConn(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// expectClosed reads until the server closes the connection; it fails if
// the server sends more than junk or does not close within 5 s.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("server did not close the connection")
	}
}

func TestOversizedPacket(t *testing.T) {
	for _, tt := range []struct {
		name      string
		maxPacket int64
		declared  uint32
	}{
		{"2 GB declared", 0, 2 << 30},
		{"over a configured 64 KiB cap, under the library's 1 MiB", 64 << 10, 100 << 10},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, milter.Options{Engine: newEngine(t, baseConfig), MaxPacket: tt.maxPacket})
			c := rawConn(t, h.addr)
			var hdr [5]byte
			binary.BigEndian.PutUint32(hdr[:], tt.declared)
			hdr[4] = 'O'
			if _, err := c.Write(hdr[:]); err != nil {
				t.Fatal(err)
			}
			expectClosed(t, c)
			if n := h.srv.Stats().OversizedPackets; n != 1 {
				t.Fatalf("oversized packets counted: %d, want 1", n)
			}
			waitFor(t, "session to end", func() bool { return h.srv.Stats().Active == 0 })
			if strings.Count(h.logs.String(), "milter packet too large") != 1 {
				t.Fatalf("want one log line about the packet: %s", h.logs)
			}
		})
	}
	// A packet under the cap still works (the cap does not break framing).
	h := start(t, milter.Options{Engine: newEngine(t, baseConfig), MaxPacket: 64 << 10})
	s := h.session(t)
	connect(t, s, "192.0.2.10")
	m := alice("alice@example.com", "a@example.org")
	m.body = strings.Repeat("x", 200<<10)
	if r := send(t, s, m); r.end.Code != gomilter.ActAccept {
		t.Fatalf("end: %q %s", r.end.Code, r.end.SMTPText)
	}
}

func TestIdleTimeout(t *testing.T) {
	h := start(t, milter.Options{Engine: newEngine(t, baseConfig), IdleTimeout: 100 * time.Millisecond})
	s := h.session(t)
	connect(t, s, "192.0.2.10")
	waitFor(t, "idle session to be closed", func() bool { return h.srv.Stats().IdleTimeouts == 1 && h.srv.Stats().Active == 0 })
	if _, err := s.Mail("alice@example.com", nil); err == nil {
		t.Fatal("the idle session still answers")
	}
}

func TestSessionCap(t *testing.T) {
	h := start(t, milter.Options{Engine: newEngine(t, baseConfig), MaxSessions: 1})
	first := h.session(t)
	connect(t, first, "192.0.2.10")
	second := h.session(t)
	a, err := second.Conn("client.example.net", gomilter.FamilyInet, 40001, "192.0.2.11")
	if err != nil {
		t.Fatalf("session past the cap: %v (want a tempfail, not a closed connection)", err)
	}
	if a.Code != gomilter.ActTempFail {
		t.Fatalf("session past the cap: %q, want tempfail", a.Code)
	}
	if st := h.srv.Stats(); st.Refused != 1 || st.Active != 1 {
		t.Fatalf("stats %+v", st)
	}
	first.Close()
	waitFor(t, "first session to end", func() bool { return h.srv.Stats().Active == 0 })
	third := h.session(t)
	connect(t, third, "192.0.2.10")
	if r := send(t, third, alice("alice@example.com", "a@example.org")); r.end.Code != gomilter.ActAccept {
		t.Fatalf("after the cap freed: %q %s", r.end.Code, r.end.SMTPText)
	}
}

func TestShutdownLetsMessageFinish(t *testing.T) {
	h := start(t, milter.Options{Engine: newEngine(t, baseConfig)})
	busy := h.session(t)
	connect(t, busy, "192.0.2.10")
	idle := h.session(t)
	connect(t, idle, "192.0.2.12")
	m := alice("alice@example.com", "a@example.org")
	if err := busy.Macros(gomilter.CodeMail, m.mailMacros()...); err != nil {
		t.Fatal(err)
	}
	mustContinue(t, "mail")(busy.Mail(m.from, nil))
	mustContinue(t, "rcpt")(busy.Rcpt("a@example.org", nil))

	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stopped <- h.srv.Shutdown(ctx)
	}()
	waitFor(t, "the idle session to be closed", func() bool { return h.srv.Stats().Active == 1 })
	select {
	case err := <-stopped:
		t.Fatalf("Shutdown returned %v with a message in progress", err)
	default:
	}
	if _, err := net.Dial("tcp", h.addr); err == nil {
		t.Fatal("the server still accepts connections while stopping")
	}
	for _, hd := range m.headers {
		mustContinue(t, "header")(busy.HeaderField(hd[0], hd[1]))
	}
	_, end, err := busy.BodyReadFrom(strings.NewReader(m.body))
	if err != nil || end.Code != gomilter.ActAccept {
		t.Fatalf("message in progress during shutdown: %v %+v", err, end)
	}
	busy.Abort()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return after the last message ended")
	}
}

func TestShutdownDeadline(t *testing.T) {
	h := start(t, milter.Options{Engine: newEngine(t, baseConfig)})
	s := h.session(t)
	connect(t, s, "192.0.2.10")
	m := alice("alice@example.com", "a@example.org")
	mailFrom(t, s, m)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := h.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want deadline exceeded", err)
	}
	waitFor(t, "the stuck session to be closed", func() bool { return h.srv.Stats().Active == 0 })
}

// Client-controlled CR/LF never splits a log line.
func TestLogLinesStayOneLine(t *testing.T) {
	h := start(t, milter.Options{Engine: newEngine(t, baseConfig)})
	s := h.session(t)
	connect(t, s, "192.0.2.10")
	m := alice("alice@example.com", "a@example.org")
	m.from = "alice@example.com\r\n{\"msg\":\"decision\",\"action\":\"forged\"}\r\nx"
	send(t, s, m)
	logs := strings.TrimSpace(h.logs.String())
	d := h.logs.decisions(t) // fails on any line that is not one JSON object
	if len(d) != 1 || !strings.Contains(d[0]["mail_from"].(string), "\r\n") {
		t.Fatalf("want one decision carrying the raw sender: %v", d)
	}
	if strings.Contains(logs, "\r") || strings.Contains(logs, "\n{\"msg\":\"decision\",\"action\":\"forged\"") {
		t.Fatalf("client input split the log output: %q", logs)
	}
}

// The server asks the MTA for the macros of every stage (Postfix applies a
// symbol list to all stages once one is given).
func TestNegotiationRequestsMacros(t *testing.T) {
	h := start(t, milter.Options{Engine: newEngine(t, baseConfig)})
	c := rawConn(t, h.addr)
	req := make([]byte, 4+1+12)
	binary.BigEndian.PutUint32(req, 13)
	req[4] = 'O'
	binary.BigEndian.PutUint32(req[5:], 6)
	binary.BigEndian.PutUint32(req[9:], 0x1ff)
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var n uint32
	if err := binary.Read(c, binary.BigEndian, &n); err != nil {
		t.Fatal(err)
	}
	resp := make([]byte, n)
	if _, err := io.ReadFull(c, resp); err != nil {
		t.Fatal(err)
	}
	if resp[0] != 'O' || len(resp) < 13 {
		t.Fatalf("negotiation reply %q", resp)
	}
	actions := gomilter.OptAction(binary.BigEndian.Uint32(resp[5:]))
	if actions&(gomilter.OptSetSymList|gomilter.OptAddHeader|gomilter.OptChangeHeader) != gomilter.OptSetSymList|gomilter.OptAddHeader|gomilter.OptChangeHeader {
		t.Fatalf("actions %#x lack symlist or header changes", actions)
	}
	lists := map[gomilter.Stage]string{}
	for rest := resp[13:]; len(rest) > 4; {
		stage := gomilter.Stage(binary.BigEndian.Uint32(rest))
		end := 4
		for end < len(rest) && rest[end] != 0 {
			end++
		}
		lists[stage] = string(rest[4:end])
		rest = rest[min(end+1, len(rest)):]
	}
	// Every stage is listed (Postfix falls back to its own list for a stage
	// left empty), with the macros applyMacros reads.
	for stage, want := range map[gomilter.Stage][]string{
		gomilter.StageConnect:  {"{client_addr}", "{client_name}"},
		gomilter.StageHelo:     {"{client_addr}"},
		gomilter.StageMailFrom: {"{auth_authen}", "{auth_type}", "{client_addr}", "i"},
		gomilter.StageRcptTo:   {"i"},
		gomilter.StageData:     {"i"},
		gomilter.StageEOH:      {"i"},
		gomilter.StageEOM:      {"i"},
	} {
		got := strings.Fields(lists[stage])
		for _, w := range want {
			if !slices.Contains(got, w) {
				t.Errorf("stage %d macros %q lack %q", stage, lists[stage], w)
			}
		}
	}
}

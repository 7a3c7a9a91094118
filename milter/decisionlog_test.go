package milter_test

import (
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	gomilter "github.com/emersion/go-milter"

	"github.com/abusemilter/abusemilter/internal/logging"
	"github.com/abusemilter/abusemilter/milter"
	"github.com/abusemilter/abusemilter/scoring"
)

// events is an Observer that records decisions.
type events struct {
	mu  sync.Mutex
	got []milter.DecisionEvent
}

func (e *events) Decision(ev milter.DecisionEvent) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, ev)
}
func (e *events) SessionOpened()  {}
func (e *events) SessionClosed()  {}
func (e *events) SessionRefused() {}

func (e *events) list() []milter.DecisionEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]milter.DecisionEvent(nil), e.got...)
}

// forged is alice sending as someone else, with a Sender, an encoded
// Subject and a body whose text must never reach the log.
func forged() message {
	m := alice("Chief Executive <ceo@other-company.example>", "bob@example.org")
	m.headers[2] = [2]string{"Message-Id", "<forged-1@mail.example.com>"}
	m.headers[3] = [2]string{"Subject", "=?utf-8?q?Dringend=3A_=C3=9Cberweisung?="}
	m.headers = append(m.headers, [2]string{"Sender", "assistant@other-company.example"})
	m.body = "Please wire the money today. SECRET-BODY-MARKER-4711\r\nhttps://bit.ly/xyz\r\n"
	return m
}

// TestDecisionLineExplainsItself: the end-of-message line of a refused
// message names what the rules saw: the header From and Sender addresses,
// the Message-ID, the Subject's length (never its text), every finding
// with its rule, score and reason, the HELO name, and the milter's own
// message id, which every line of the message carries. Nothing of the body
// is logged.
func TestDecisionLineExplainsItself(t *testing.T) {
	obs := &events{}
	h := start(t, milter.Options{Engine: newEngine(t, baseConfig), Observer: obs})
	s := h.session(t)
	connect(t, s, "192.0.2.10")
	r := send(t, s, forged())
	if r.end.SMTPCode != 550 {
		t.Fatalf("end of message: %d %s, want 550", r.end.SMTPCode, r.end.SMTPText)
	}
	waitFor(t, "the decision line", func() bool { return len(h.logs.decisions(t)) == 1 })
	d := h.logs.decisions(t)[0]
	want := map[string]any{
		"stage": "eom", "action": "reject", "rule": "FROM_DOMAIN_NOT_OWNED", "clause": "impersonation",
		"helo": "client.example.net", "client": "192.0.2.10", "client_name": "client.example.net",
		"mail_from": "alice@example.com", "message_id": "<forged-1@mail.example.com>", "mode": "enforce",
		"reply":       "550 5.7.1 Rejected under the e-mail abuse policy (impersonation: FROM_DOMAIN_NOT_OWNED)",
		"subject_len": float64(len([]rune("Dringend: Überweisung"))),
	}
	for k, v := range want {
		if d[k] != v {
			t.Errorf("decision %s = %v, want %v", k, d[k], v)
		}
	}
	if hf, _ := d["header_from"].([]any); len(hf) != 1 || hf[0] != "ceo@other-company.example" {
		t.Errorf("header_from = %v", d["header_from"])
	}
	if hs, _ := d["header_sender"].([]any); len(hs) != 1 || hs[0] != "assistant@other-company.example" {
		t.Errorf("header_sender = %v", d["header_sender"])
	}
	mid, _ := d["milter_msg_id"].(string)
	if !regexp.MustCompile(`^[0-9a-f]{12}\.1$`).MatchString(mid) {
		t.Errorf("milter_msg_id = %q, want CONNECTION.1", mid)
	}
	findings, _ := d["findings"].([]any)
	var fromDomain map[string]any
	for _, f := range findings {
		if f := f.(map[string]any); f["rule"] == "FROM_DOMAIN_NOT_OWNED" {
			fromDomain = f
		}
	}
	if fromDomain == nil || fromDomain["score"] == nil || !strings.Contains(fmt.Sprint(fromDomain["reason"]), "other-company.example") {
		t.Errorf("findings = %v, want FROM_DOMAIN_NOT_OWNED with its score and a reason naming the From domain", findings)
	}
	logs := h.logs.String()
	for _, secret := range []string{"SECRET-BODY-MARKER", "wire the money", "Dringend", "Überweisung"} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log holds %q from the message's body or Subject:\n%s", secret, logs)
		}
	}
	// A second message on the connection gets the next id.
	send(t, s, alice("alice@example.com", "bob@example.org"))
	waitFor(t, "the second decision", func() bool { return len(h.logs.decisions(t)) == 2 })
	if got := h.logs.decisions(t)[1]["milter_msg_id"]; got != strings.TrimSuffix(mid, "1")+"2" {
		t.Errorf("second message's id %v, want the connection's .2 (first %s)", got, mid)
	}
	// Every line of a message has its id: here the debug line of a third
	// message that the client abandons after RCPT.
	mailFrom(t, s, alice("alice@example.com"))
	mustContinue(t, "rcpt")(s.Rcpt("bob@example.org", nil))
	abort(t, s)
	third := strings.TrimSuffix(mid, "1") + "3"
	waitFor(t, "the abort line", func() bool {
		return strings.Contains(h.logs.String(), `"msg":"message aborted"`) && strings.Contains(h.logs.String(), `"milter_msg_id":"`+third+`"`)
	})
	ev := obs.list()
	if len(ev) != 2 || ev[0].Stage != "eom" || ev[0].Mode != scoring.Enforce || ev[0].Trial || ev[0].Verdict.Rule != "FROM_DOMAIN_NOT_OWNED" {
		t.Errorf("observer events = %+v", ev)
	}
}

// TestRefusalBeforeDataJoinsPostfix: a refusal at MAIL FROM logs what
// Postfix's "NOQUEUE: milter-reject: MAIL from NAME[ADDR]: REPLY; from=<...>
// ... helo=<...>" line holds (no queue id yet), and a RCPT-stage refusal
// adds the refused recipient; each stage is counted once per message.
func TestRefusalBeforeDataJoinsPostfix(t *testing.T) {
	obs := &events{}
	h := start(t, milter.Options{Engine: newEngine(t, baseConfig), Observer: obs})
	s := h.session(t)
	connect(t, s, "203.0.113.10")
	m := alice("alice@example.com", "one@example.org")
	m.login, m.client = "mallory", "203.0.113.10" // unknown login: deferred at MAIL
	r := send(t, s, m)
	if r.mail.Code != gomilter.ActReplyCode || r.mail.SMTPCode != 451 {
		t.Fatalf("MAIL: %q %d %s", r.mail.Code, r.mail.SMTPCode, r.mail.SMTPText)
	}
	r = send(t, s, alice("alice@example.com", "one@example.org", "two@example.org", "three@example.org", "four@example.org"))
	if len(r.rcpts) != 4 || r.rcpts[2].SMTPCode != 452 || r.rcpts[3].SMTPCode != 452 || r.end.Code != gomilter.ActAccept {
		t.Fatalf("RCPT past the cap: %+v, end %+v", r.rcpts, r.end)
	}
	waitFor(t, "three decision lines", func() bool { return len(h.logs.decisions(t)) == 3 })
	d := h.logs.decisions(t)
	mail, rcpt, eom := d[0], d[1], d[2]
	for k, v := range map[string]any{"stage": "mail", "queue_id": "", "client": "203.0.113.10", "client_name": "client.example.net",
		"helo": "client.example.net", "mail_from": "alice@example.com", "login": "mallory", "rule": "UNKNOWN_LOGIN",
		"reply": "451 4.7.1 Deferred under the e-mail abuse policy (policy: UNKNOWN_LOGIN)"} {
		if mail[k] != v {
			t.Errorf("MAIL-stage line %s = %v, want %v", k, mail[k], v)
		}
	}
	if rcpt["stage"] != "rcpt" || rcpt["rcpt"] != "three@example.org" || rcpt["helo"] != "client.example.net" ||
		!strings.HasPrefix(fmt.Sprint(rcpt["reply"]), "452 4.5.3 ") {
		t.Errorf("RCPT-stage line: %v", rcpt)
	}
	if eom["stage"] != "eom" || eom["rcpts_refused"] != 2.0 || eom["milter_msg_id"] != rcpt["milter_msg_id"] {
		t.Errorf("end-of-message line: %v", eom)
	}
	var stages []string
	for _, e := range obs.list() {
		stages = append(stages, e.Stage)
	}
	if !slices.Equal(stages, []string{"mail", "rcpt", "eom"}) {
		t.Errorf("observed stages %v, want mail, rcpt, eom: one per message and stage", stages)
	}
}

// TestRedactedDecisionLine: with a Redactor, no local part of an address
// reaches the decision line; domains and the deciding rule stay readable.
func TestRedactedDecisionLine(t *testing.T) {
	red := logging.NewRedactor([]byte("test key"))
	h := start(t, milter.Options{Engine: newEngine(t, baseConfig), Redact: red})
	s := h.session(t)
	connect(t, s, "192.0.2.10")
	send(t, s, forged())
	waitFor(t, "the decision line", func() bool { return len(h.logs.decisions(t)) == 1 })
	line := h.logs.String()
	for _, local := range []string{"ceo@", "assistant@", "alice@", "bob@"} {
		if strings.Contains(line, local) {
			t.Errorf("%q in the redacted log:\n%s", local, line)
		}
	}
	d := h.logs.decisions(t)[0]
	if d["mail_from"] != red.Address("alice@example.com") || !strings.HasSuffix(fmt.Sprint(d["mail_from"]), "@example.com") {
		t.Errorf("mail_from = %v, want %s", d["mail_from"], red.Address("alice@example.com"))
	}
	if hf, _ := d["header_from"].([]any); len(hf) != 1 || hf[0] != red.Address("ceo@other-company.example") {
		t.Errorf("header_from = %v", d["header_from"])
	}
	if d["rule"] != "FROM_DOMAIN_NOT_OWNED" {
		t.Errorf("rule = %v", d["rule"])
	}
}

// trialHarness serves one server on a main and a trial listener.
type trialHarness struct {
	*harness
	trialAddr string
	obs       *events
}

func startTrial(t *testing.T, yaml string) *trialHarness {
	t.Helper()
	obs := &events{}
	h := start(t, milter.Options{Engine: newEngine(t, yaml), Observer: obs})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go h.srv.Serve(milter.TrialListener(ln))
	return &trialHarness{harness: h, trialAddr: ln.Addr().String(), obs: obs}
}

// trialConnect opens a session to addr, sending the trial macro at connect
// when trial is set; it returns the session and the connect answer.
func trialConnect(t *testing.T, addr string, trial bool) (*gomilter.ClientSession, *gomilter.Action) {
	t.Helper()
	s := (&harness{addr: addr}).session(t)
	kv := []string{"{client_addr}", "192.0.2.10"}
	if trial {
		kv = append(kv, milter.MacroTrial, "yes")
	}
	if err := s.Macros(gomilter.CodeConn, kv...); err != nil {
		t.Fatal(err)
	}
	a, err := s.Conn("client.example.net", gomilter.FamilyInet, 40000, "192.0.2.10")
	if err != nil {
		t.Fatal(err)
	}
	return s, a
}

// TestTrialOnlyFromTheTrialListener: a session is a trial only on the
// trial listener and with the trial macro. There, nothing is charged (the
// account's one message an hour stays unused however many trials run) and
// the verdict comes back in X-Abuse-Trial headers; the macro on the main
// listener, where the MTA connects, is refused at once; and a session on
// the trial listener without the macro is real mail, charged as usual.
func TestTrialOnlyFromTheTrialListener(t *testing.T) {
	const oneAnHour = `
identity:
  login_is_address: false
  accounts:
    alice: {logins: [alice], send_as: [example.com]}
limits:
  account_messages: ["1/1h"]
strikes:
  threshold: 1
`
	h := startTrial(t, oneAnHour)

	// Trials: three forged messages and three good ones, none charged,
	// no strike (a strike would lock alice at threshold 1).
	for i := range 3 {
		s, a := trialConnect(t, h.trialAddr, true)
		if a.Code != gomilter.ActContinue {
			t.Fatalf("trial connect: %q %d %s", a.Code, a.SMTPCode, a.SMTPText)
		}
		r := send(t, s, forged())
		if r.end.SMTPCode != 550 {
			t.Fatalf("trial %d of a forged message: %+v", i, r.end)
		}
		var verdict string
		var findings int
		for _, m := range r.mods {
			switch m.HeaderName {
			case milter.HeaderTrial:
				verdict = m.HeaderValue
			case milter.HeaderTrialFinding:
				findings++
			}
		}
		if !strings.HasPrefix(verdict, "reject; rule=FROM_DOMAIN_NOT_OWNED") || !strings.Contains(verdict, "milter_msg_id=") || findings == 0 {
			t.Fatalf("trial headers: verdict %q, %d findings; mods %+v", verdict, findings, r.mods)
		}
		if r := send(t, s, alice("alice@example.com", "bob@example.org")); r.end.Code != gomilter.ActAccept {
			t.Fatalf("trial %d of a good message: %+v (charged or locked by the trials?)", i, r.end)
		}
	}

	// The trial macro where the MTA connects: refused, nothing decided.
	_, a := trialConnect(t, h.addr, true)
	if a.Code != gomilter.ActReplyCode || !strings.Contains(a.SMTPText, "trial listener") {
		t.Fatalf("trial macro on the main listener: %q %d %s, want a refusal", a.Code, a.SMTPCode, a.SMTPText)
	}
	// Also when it first comes with MAIL FROM.
	s, _ := trialConnect(t, h.addr, false)
	if err := s.Macros(gomilter.CodeMail, "{auth_authen}", "alice", milter.MacroTrial, "yes"); err != nil {
		t.Fatal(err)
	}
	if a, err := s.Mail("alice@example.com", nil); err != nil || a.Code != gomilter.ActReplyCode || !strings.Contains(a.SMTPText, "trial listener") {
		t.Fatalf("trial macro at MAIL on the main listener: %+v %v", a, err)
	}

	// Real mail from the trial listener (no macro) is charged: the first
	// message uses the hour's one, the second is deferred.
	s, _ = trialConnect(t, h.trialAddr, false)
	if r := send(t, s, alice("alice@example.com", "bob@example.org")); r.end.Code != gomilter.ActAccept || hasTrialHeader(r.mods) {
		t.Fatalf("first real message on the trial listener: %+v %+v", r.end, r.mods)
	}
	if r := send(t, s, alice("alice@example.com", "bob@example.org")); r.end.SMTPCode != 451 || !strings.Contains(r.end.SMTPText, "ACCOUNT_MSG_RATE") {
		t.Fatalf("second real message: %d %s, want 451 ACCOUNT_MSG_RATE", r.end.SMTPCode, r.end.SMTPText)
	}

	trials, real := 0, 0
	for _, e := range h.obs.list() {
		if e.Trial {
			trials++
		} else {
			real++
		}
	}
	if trials != 6 || real != 2 {
		t.Errorf("observer: %d trial and %d real decisions, want 6 and 2", trials, real)
	}
	waitFor(t, "the decision lines", func() bool { return len(h.logs.decisions(t)) == 8 })
	for i, d := range h.logs.decisions(t) {
		if (i < 6) != (d["trial"] == true) {
			t.Errorf("decision %d: trial = %v", i, d["trial"])
		}
	}
}

func hasTrialHeader(mods []gomilter.ModifyAction) bool {
	for _, m := range mods {
		if strings.HasPrefix(m.HeaderName, "X-Abuse-Trial") {
			return true
		}
	}
	return false
}

// Package trial is the milter client of abusescan --milter: it sends one
// message through a running abusemilter over the milter protocol, as
// Postfix would (connect, HELO, MAIL, each RCPT, the headers, the body,
// end of message, with the macros Postfix sends), and reports what the
// milter answered at each stage, the headers it would add, and (for a
// trial, which charges nothing) its verdict and findings.
//
// A trial is recognised by the daemon only on its trial listener and only
// with the trial macro (see MacroTrial); Send sends the macro unless
// Options.Charge is set, and reports whether the daemon confirmed the
// trial.
package trial

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	gomilter "github.com/emersion/go-milter"
)

// The client's side of the trial protocol; the daemon's side is in
// milter/trial.go, whose constants these must equal (a test in
// cmd/abusescan checks it: only the commands may import milter/).
const (
	// MacroTrial is sent at connect and MAIL unless Options.Charge.
	MacroTrial = "{abusemilter_trial}"
	// HeaderTrial carries the trial's verdict, HeaderTrialFinding each
	// finding.
	HeaderTrial        = "X-Abuse-Trial"
	HeaderTrialFinding = "X-Abuse-Trial-Finding"
)

// Options describe one submission.
type Options struct {
	// Addr is the milter: "inet:HOST:PORT" or "unix:/path".
	Addr string
	// Login is the SASL login ({auth_authen}); empty: unauthenticated.
	Login string
	// Client is the SMTP client's address ({client_addr}); empty: unknown.
	Client string
	// ClientName is the client's host name; empty: "unknown", as Postfix
	// says for a client without reverse DNS.
	ClientName string
	// Helo is the HELO/EHLO name; empty: this host's name.
	Helo string
	// MailFrom is the envelope sender, without angle brackets ("" is the
	// null sender).
	MailFrom string
	// Rcpts are the envelope recipients; at least one.
	Rcpts []string
	// Charge sends no trial macro: the daemon treats the message as real
	// mail and charges the account's counters and strikes.
	Charge bool
	// Timeout bounds each read and write (default 30s).
	Timeout time.Duration
}

// Header is one header field the milter would add (or change).
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	// Action is "add", "insert" or "change" (an empty value removes the
	// field); Index is the change's 1-based index among fields of the name.
	Action string `json:"action"`
	Index  int    `json:"index,omitempty"`
}

// Finding is one finding of a trial's verdict.
type Finding struct {
	Rule   string  `json:"rule"`
	Clause string  `json:"clause"`
	Score  float64 `json:"score"`
	Reason string  `json:"reason"`
}

// StageReply is the milter's answer at one stage.
type StageReply struct {
	Stage string `json:"stage"` // connect, helo, mail, rcpt, eom
	Rcpt  string `json:"rcpt,omitempty"`
	// Action is accept, continue, reject, tempfail, discard or reply (a
	// custom SMTP reply, in Code and Text).
	Action string `json:"action"`
	Code   int    `json:"code,omitempty"`
	Text   string `json:"text,omitempty"` // the whole reply, "550 5.7.1 ..."
}

// Result is what the milter did with a message.
type Result struct {
	// Trial is set when the daemon confirmed that it decided a trial
	// (nothing was charged); a refusal at MAIL or RCPT ends a message
	// before it can confirm, and charges nothing anyway.
	Trial bool `json:"trial"`
	// Stage is where the message was decided: mail, rcpt (every
	// recipient refused) or eom.
	Stage string `json:"stage"`
	// Verdict is accept, defer or reject, read from the final reply (and
	// from the trial's verdict, which also says what monitor mode would
	// have refused).
	Verdict string `json:"verdict"`
	Code    int    `json:"code"`
	// Reply is the SMTP reply the client got; "" when the message was
	// accepted.
	Reply  string       `json:"reply"`
	Stages []StageReply `json:"stages"`
	// Headers are the header changes the milter asked for (in monitor
	// mode X-Abuse-Verdict and X-Abuse-Findings), without the trial's own.
	Headers []Header `json:"headers"`
	// The trial's verdict, from HeaderTrial (empty without one).
	Rule        string    `json:"rule"`
	Clause      string    `json:"clause"`
	Score       float64   `json:"score"`
	Mode        string    `json:"mode"`
	Monitor     bool      `json:"monitor"`
	MilterMsgID string    `json:"milter_msg_id"`
	Findings    []Finding `json:"findings"`
}

// ErrRefused is wrapped by Send's error when the milter refused the
// session itself (at connect or HELO): for a trial, the address is not
// the daemon's trial listener.
var ErrRefused = errors.New("the milter refused the session")

// Dial parses a milter address for Send: "inet:HOST:PORT" (also
// "inet6:", "tcp:") or "unix:/path" (also "local:").
func Dial(addr string) (network, address string, err error) {
	kind, rest, ok := strings.Cut(addr, ":")
	switch {
	case !ok:
	case kind == "inet" || kind == "inet6" || kind == "tcp":
		if _, _, err := net.SplitHostPort(rest); err == nil {
			return "tcp", rest, nil
		}
	case kind == "unix" || kind == "local":
		if rest != "" {
			return "unix", rest, nil
		}
	}
	return "", "", fmt.Errorf("milter address %q: want inet:HOST:PORT or unix:/path", addr)
}

// Send submits the message raw (a whole RFC 5322 message, LF or CRLF line
// ends) to the milter and returns its answers.
func Send(ctx context.Context, o Options, raw []byte) (*Result, error) {
	network, address, err := Dial(o.Addr)
	if err != nil {
		return nil, err
	}
	if len(o.Rcpts) == 0 {
		return nil, errors.New("no recipient: give --rcpt or a message with To, Cc or Bcc")
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	headers, body := split(raw)
	dialer := &net.Dialer{Timeout: o.Timeout}
	if dl, ok := ctx.Deadline(); ok {
		dialer.Deadline = dl
	}
	c := gomilter.NewClientWithOptions(network, address, gomilter.ClientOptions{
		Dialer:       dialer,
		ReadTimeout:  o.Timeout,
		WriteTimeout: o.Timeout,
		// The header actions abusemilter uses, and no protocol option:
		// go-milter announces protocol version 2, and its client then
		// refuses to offer anything past version 2's options. Header
		// values are sent without their leading whitespace, as an MTA
		// does without SMFIP_HDR_LEADSPC.
		ActionMask: gomilter.OptAddHeader | gomilter.OptChangeHeader,
	})
	s, err := c.Session()
	if err != nil {
		return nil, fmt.Errorf("milter %s: %w", o.Addr, err)
	}
	defer s.Close()
	r := &Result{Stages: []StageReply{}, Headers: []Header{}, Findings: []Finding{}}
	t := &session{s: s, o: o, r: r}
	return t.run(headers, body)
}

type session struct {
	s *gomilter.ClientSession
	o Options
	r *Result
}

func (t *session) run(headers []field, body []byte) (*Result, error) {
	o := t.o
	clientName := o.ClientName
	if clientName == "" {
		clientName = "unknown"
	}
	helo := o.Helo
	if helo == "" {
		helo, _ = os.Hostname()
		if helo == "" {
			helo = "localhost"
		}
	}
	family, addr := gomilter.FamilyUnknown, ""
	if o.Client != "" {
		a, err := netip.ParseAddr(strings.Trim(o.Client, "[]"))
		if err != nil {
			return nil, fmt.Errorf("client address %q: %w", o.Client, err)
		}
		family, addr = gomilter.FamilyInet, a.Unmap().String()
		if a.Unmap().Is6() {
			family = gomilter.FamilyInet6
		}
	}
	conn := []string{"j", "abusescan", "{daemon_name}", "abusescan", "{client_name}", clientName}
	if addr != "" {
		conn = append(conn, "{client_addr}", addr)
	}
	if !o.Charge {
		conn = append(conn, MacroTrial, "yes")
	}
	if err := t.s.Macros(gomilter.CodeConn, conn...); err != nil {
		return nil, err
	}
	a, err := t.s.Conn(clientName, family, 0, addr)
	if err != nil {
		return nil, err
	}
	if final := t.stage("connect", "", a); final {
		return nil, fmt.Errorf("%w at connect: %s", ErrRefused, describe(a))
	}
	a, err = t.s.Helo(helo)
	if err != nil {
		return nil, err
	}
	if final := t.stage("helo", "", a); final {
		return nil, fmt.Errorf("%w at HELO: %s", ErrRefused, describe(a))
	}

	mail := []string{"{mail_addr}", o.MailFrom}
	if o.Login != "" {
		mail = append(mail, "{auth_authen}", o.Login, "{auth_type}", "PLAIN")
	}
	if !o.Charge {
		mail = append(mail, MacroTrial, "yes")
	}
	if err := t.s.Macros(gomilter.CodeMail, mail...); err != nil {
		return nil, err
	}
	if a, err = t.s.Mail(o.MailFrom, nil); err != nil {
		return nil, err
	}
	if t.stage("mail", "", a) {
		return t.decided("mail", a), nil
	}
	accepted := 0
	var last *gomilter.Action
	for _, rc := range o.Rcpts {
		if err := t.s.Macros(gomilter.CodeRcpt, "{rcpt_addr}", rc); err != nil {
			return nil, err
		}
		if a, err = t.s.Rcpt(rc, nil); err != nil {
			return nil, err
		}
		if !t.stage("rcpt", rc, a) {
			accepted++
		} else {
			last = a
		}
	}
	if accepted == 0 {
		return t.decided("rcpt", last), nil
	}
	for _, h := range headers {
		v := h.value
		if !t.s.ProtocolOption(gomilter.OptHeaderLeadingSpace) {
			v = strings.TrimLeft(v, " \t") // what an MTA sends without SMFIP_HDR_LEADSPC
		}
		if a, err = t.s.HeaderField(h.name, v); err != nil {
			return nil, err
		}
		if t.stage("header", "", a) {
			return t.decided("eom", a), nil
		}
	}
	if a, err = t.s.HeaderEnd(); err != nil {
		return nil, err
	}
	if t.stage("eoh", "", a) {
		return t.decided("eom", a), nil
	}
	mods, a, err := t.s.BodyReadFrom(bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	t.modifications(mods)
	t.stage("eom", "", a)
	return t.decided("eom", a), nil
}

// stage records a stage's answer; it reports whether the answer ends the
// message (anything but continue).
func (t *session) stage(stage, rcpt string, a *gomilter.Action) bool {
	sr := StageReply{Stage: stage, Rcpt: rcpt, Action: actionName(a.Code)}
	if a.Code == gomilter.ActReplyCode {
		sr.Code, sr.Text = a.SMTPCode, strconv.Itoa(a.SMTPCode)+" "+a.SMTPText
	}
	// Continue answers of the header stages say nothing: keep the list short.
	if !(a.Code == gomilter.ActContinue && (stage == "header" || stage == "eoh" || stage == "helo" || stage == "connect")) {
		t.r.Stages = append(t.r.Stages, sr)
	}
	return a.Code != gomilter.ActContinue
}

// decided fills the result's final verdict from the deciding answer.
func (t *session) decided(stage string, a *gomilter.Action) *Result {
	r := t.r
	r.Stage = stage
	switch {
	case a == nil || a.Code == gomilter.ActAccept || a.Code == gomilter.ActContinue:
		r.Verdict, r.Code = "accept", 250
	case a.Code == gomilter.ActReplyCode:
		r.Code, r.Reply = a.SMTPCode, strconv.Itoa(a.SMTPCode)+" "+a.SMTPText
		r.Verdict = "reject"
		if a.SMTPCode/100 == 4 {
			r.Verdict = "defer"
		}
	case a.Code == gomilter.ActTempFail:
		r.Verdict, r.Code, r.Reply = "defer", 451, "451 4.7.1 Service unavailable - try again later"
	case a.Code == gomilter.ActReject:
		r.Verdict, r.Code, r.Reply = "reject", 550, "550 5.7.1 Command rejected"
	case a.Code == gomilter.ActDiscard:
		r.Verdict, r.Code = "discard", 250
	default:
		r.Verdict = actionName(a.Code)
	}
	if r.Rule == "" && r.Reply != "" {
		r.Clause, r.Rule = ruleOfReply(r.Reply)
	}
	return r
}

// modifications sorts the header changes: the trial's own headers fill the
// verdict and findings, the rest are what the milter would do to the mail.
func (t *session) modifications(mods []gomilter.ModifyAction) {
	r := t.r
	for _, m := range mods {
		value := strings.TrimPrefix(m.HeaderValue, " ")
		switch {
		case m.Code == gomilter.ActAddHeader && strings.EqualFold(m.HeaderName, HeaderTrial):
			r.Trial = true
			t.trialVerdict(value)
		case m.Code == gomilter.ActAddHeader && strings.EqualFold(m.HeaderName, HeaderTrialFinding):
			r.Findings = append(r.Findings, parseFinding(value))
		case m.Code == gomilter.ActAddHeader:
			r.Headers = append(r.Headers, Header{Name: m.HeaderName, Value: value, Action: "add"})
		case m.Code == gomilter.ActInsertHeader:
			r.Headers = append(r.Headers, Header{Name: m.HeaderName, Value: value, Action: "insert", Index: int(m.HeaderIndex)})
		case m.Code == gomilter.ActChangeHeader:
			r.Headers = append(r.Headers, Header{Name: m.HeaderName, Value: value, Action: "change", Index: int(m.HeaderIndex)})
		}
	}
}

// trialVerdict reads "ACTION; rule=R; clause=C; score=S; code=N;
// mode=M; milter_msg_id=ID" (milter.VerdictHeader and the trial's fields).
func (t *session) trialVerdict(v string) {
	r := t.r
	parts := strings.Split(v, "; ")
	action := parts[0]
	for _, p := range parts[1:] {
		k, val, _ := strings.Cut(p, "=")
		switch k {
		case "rule":
			r.Rule = val
		case "clause":
			r.Clause = val
		case "score":
			r.Score, _ = strconv.ParseFloat(val, 64)
		case "mode":
			r.Mode = val
		case "milter_msg_id":
			r.MilterMsgID = val
		}
	}
	r.Monitor = r.Mode == "monitor" && action != "accept"
}

// parseFinding reads "RULE; clause=C; score=S; reason=TEXT" (or
// "reason64=BASE64").
func parseFinding(v string) Finding {
	var f Finding
	rule, rest, _ := strings.Cut(v, "; ")
	f.Rule = rule
	for rest != "" {
		var p string
		if strings.HasPrefix(rest, "reason=") || strings.HasPrefix(rest, "reason64=") {
			p, rest = rest, ""
		} else {
			p, rest, _ = strings.Cut(rest, "; ")
		}
		k, val, _ := strings.Cut(p, "=")
		switch k {
		case "clause":
			f.Clause = val
		case "score":
			f.Score, _ = strconv.ParseFloat(val, 64)
		case "reason":
			f.Reason = val
		case "reason64":
			if d, err := base64.StdEncoding.DecodeString(val); err == nil {
				f.Reason = string(d)
			}
		}
	}
	return f
}

// ruleOfReply reads "(clause: RULE ...)" at the end of an abusemilter reply.
func ruleOfReply(reply string) (clause, rule string) {
	open := strings.LastIndexByte(reply, '(')
	if open < 0 || !strings.HasSuffix(reply, ")") {
		return "", ""
	}
	inner := reply[open+1 : len(reply)-1]
	c, rest, ok := strings.Cut(inner, ": ")
	if !ok {
		return "", ""
	}
	rule, _, _ = strings.Cut(rest, " ")
	return c, strings.TrimSuffix(rule, ",")
}

func actionName(c gomilter.ActionCode) string {
	switch c {
	case gomilter.ActAccept:
		return "accept"
	case gomilter.ActContinue:
		return "continue"
	case gomilter.ActReject:
		return "reject"
	case gomilter.ActTempFail:
		return "tempfail"
	case gomilter.ActDiscard:
		return "discard"
	case gomilter.ActReplyCode:
		return "reply"
	case gomilter.ActSkip:
		return "skip"
	}
	return fmt.Sprintf("action %q", rune(c))
}

func describe(a *gomilter.Action) string {
	if a.Code == gomilter.ActReplyCode {
		return strconv.Itoa(a.SMTPCode) + " " + a.SMTPText
	}
	return actionName(a.Code)
}

// field is one header field: its name and the text after the colon as in
// the message (leading space and folding kept, folds as "\n").
type field struct{ name, value string }

// split cuts a raw message into its header fields and its body with CRLF
// line ends, as an MTA hands them to a milter. An mbox "From " line
// before the headers is skipped.
func split(raw []byte) ([]field, []byte) {
	raw = bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n"))
	var fields []field
	rest := raw
	first := true
	for len(rest) > 0 {
		nl := bytes.IndexByte(rest, '\n')
		line := rest
		next := []byte(nil)
		if nl >= 0 {
			line, next = rest[:nl], rest[nl+1:]
		}
		if len(line) == 0 {
			rest = next
			break
		}
		if first && bytes.HasPrefix(line, []byte("From ")) {
			first, rest = false, next
			continue
		}
		first = false
		if (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			fields[len(fields)-1].value += "\n" + string(line)
			rest = next
			continue
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			break // not a header: the body starts here
		}
		fields = append(fields, field{name: string(line[:colon]), value: string(line[colon+1:])})
		rest = next
	}
	body := bytes.ReplaceAll(rest, []byte("\n"), []byte("\r\n"))
	return fields, body
}

package loadgen

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/emersion/go-milter"
)

// worker owns one milter connection at a time and sends messages over it
// one after the other, as one Postfix smtpd process does.
type worker struct {
	opts   *Options
	rec    *recorder
	client *milter.Client
	dialer net.Dialer
	conn   net.Conn // the connection under sess, closed directly on errors
	sess   *milter.ClientSession
	used   int // transactions on sess
	// dialFailures counts failures to open a session in a row.
	dialFailures int
}

var _ milter.Dialer = (*worker)(nil)

// PostfixProtocolOffer is the protocol options Postfix 3.x offers a milter
// with milter_protocol = 6: every option of version 6 (skipping stages,
// no reply per stage, SMFIR_SKIP, rejected recipients, leading space).
const PostfixProtocolOffer milter.OptProtocol = 0x1fffff

// newWorker returns a worker for opts (with defaults set) reporting to rec.
// The client asks for the actions a policy milter needs and offers every
// protocol option of version 6, as Postfix does: a milter that asks to skip
// a stage does not get it, and a milter that says it will not reply to a
// stage is not waited for there (go-milter's client honours both).
func newWorker(opts *Options, rec *recorder) *worker {
	w := &worker{opts: opts, rec: rec, dialer: net.Dialer{Timeout: opts.DialTimeout}}
	w.client = milter.NewClientWithOptions(opts.Target.Network, opts.Target.Address, milter.ClientOptions{
		Dialer:       w,
		ReadTimeout:  opts.Timeout,
		WriteTimeout: opts.Timeout,
		ActionMask:   milter.OptAddHeader | milter.OptChangeHeader,
		ProtocolMask: PostfixProtocolOffer,
	})
	return w
}

// macroStage is the macro list (SETSYMLIST stage) Postfix uses for the
// macros it sends before each command: header fields come with the end of
// headers' macros, body chunks with the end of message's.
var macroStage = map[milter.Code]milter.Stage{
	milter.CodeConn:   milter.StageConnect,
	milter.CodeHelo:   milter.StageHelo,
	milter.CodeMail:   milter.StageMailFrom,
	milter.CodeRcpt:   milter.StageRcptTo,
	milter.CodeHeader: milter.StageEOH,
	milter.CodeEOH:    milter.StageEOH,
	milter.CodeBody:   milter.StageEOM,
	milter.CodeEOB:    milter.StageEOM,
}

// macros sends the macros of a command as Postfix does: when the milter
// asked for a list for that stage, only the macros on it; otherwise all of
// kv (name, value pairs; Postfix's own lists).
func (w *worker) macros(code milter.Code, kv ...string) error {
	if list := w.sess.SymList[macroStage[code]]; len(list) > 0 {
		kept := make([]string, 0, len(kv))
		for i := 0; i+1 < len(kv); i += 2 {
			if slices.Contains(list, kv[i]) {
				kept = append(kept, kv[i], kv[i+1])
			}
		}
		kv = kept
	}
	return w.sess.Macros(code, kv...)
}

// Dial implements milter.Dialer and keeps the connection, so that a broken
// session can be closed without the QUIT that ClientSession.Close insists
// on writing first (and that leaks the socket when the write fails).
func (w *worker) Dial(network, addr string) (net.Conn, error) {
	c, err := w.dialer.Dial(network, addr)
	if err != nil {
		return nil, err
	}
	w.conn = c
	return c, nil
}

// closeSession ends the milter connection politely (ABORT, QUIT).
func (w *worker) closeSession() {
	if w.sess != nil {
		_ = w.sess.Close()
	}
	w.dropSession()
}

// backoff returns how long to wait before the next message after sessions
// failed to open: 10ms doubling up to 1s; zero when the last open worked.
func (w *worker) backoff() time.Duration {
	if w.dialFailures == 0 {
		return 0
	}
	return min(10*time.Millisecond<<min(w.dialFailures-1, 7), time.Second)
}

// dropSession closes the connection without a word, after an error.
func (w *worker) dropSession() {
	if w.conn != nil {
		_ = w.conn.Close()
	}
	w.conn, w.sess, w.used = nil, nil, 0
}

// send runs one message through the milter and records the outcome.
func (w *worker) send(n int64, m *Message) {
	start := w.opts.Now()
	if w.transaction(n, m) {
		w.rec.observe(StageMessage, w.opts.Now().Sub(start))
	}
	if w.sess != nil && w.used >= w.opts.MessagesPerConn {
		w.closeSession()
	}
}

// timed runs one protocol step and records its latency.
func (w *worker) timed(stage string, step func() (*milter.Action, error)) (*milter.Action, error) {
	t := w.opts.Now()
	act, err := step()
	if err == nil {
		w.rec.observe(stage, w.opts.Now().Sub(t))
	}
	return act, err
}

// fail counts an error at a stage and drops the connection.
func (w *worker) fail(stage string, err error) bool {
	w.rec.fail(stage, err)
	w.dropSession()
	return false
}

// transaction sends message n and reports whether it got a verdict.
func (w *worker) transaction(n int64, m *Message) bool {
	if w.sess == nil {
		ok, verdictGiven := w.open(m)
		if !ok {
			return verdictGiven
		}
	}
	w.used++
	queueID := fmt.Sprintf("%011X", n+0x10000000000)
	auth := authMacros(m)
	client := []string{"{client_addr}", m.ClientAddr, "{client_name}", m.ClientName}
	mailMacros := concat(auth, client, []string{"{mail_addr}", m.Sender, "i", queueID})
	dataMacros := concat([]string{"i", queueID}, auth, client)

	if err := w.macros(milter.CodeMail, mailMacros...); err != nil {
		return w.fail(StageMail, err)
	}
	act, err := w.timed(StageMail, func() (*milter.Action, error) { return w.sess.Mail(m.Sender, nil) })
	if err != nil {
		return w.fail(StageMail, err)
	}
	if v := classify(act); v.verdict != verdictContinue {
		return w.finish(StageMail, v, nil)
	}

	accepted := 0
	for _, rcpt := range m.Recipients {
		if err := w.macros(milter.CodeRcpt, concat(mailMacros, []string{"{rcpt_addr}", rcpt})...); err != nil {
			return w.fail(StageRcpt, err)
		}
		act, err := w.timed(StageRcpt, func() (*milter.Action, error) { return w.sess.Rcpt(rcpt, nil) })
		if err != nil {
			return w.fail(StageRcpt, err)
		}
		switch v := classify(act); v.verdict {
		case verdictContinue:
			accepted++
			w.rec.recipient(v)
		case verdictTempfail, verdictReject:
			w.rec.recipient(v)
		default: // accept or discard: the message's fate is settled here
			return w.finish(StageRcpt, v, nil)
		}
	}
	if accepted == 0 {
		return w.finish(StageRcpt, outcome{verdict: verdictNoRecipients}, nil)
	}

	for _, f := range m.Header {
		if err := w.macros(milter.CodeHeader, dataMacros...); err != nil {
			return w.fail(StageHeader, err)
		}
		act, err := w.timed(StageHeader, func() (*milter.Action, error) { return w.sess.HeaderField(f.Name, f.Value) })
		if err != nil {
			return w.fail(StageHeader, err)
		}
		if v := classify(act); v.verdict != verdictContinue {
			return w.finish(StageHeader, v, nil)
		}
	}
	if err := w.macros(milter.CodeEOH, dataMacros...); err != nil {
		return w.fail(StageEOH, err)
	}
	act, err = w.timed(StageEOH, w.sess.HeaderEnd)
	if err != nil {
		return w.fail(StageEOH, err)
	}
	if v := classify(act); v.verdict != verdictContinue {
		return w.finish(StageEOH, v, nil)
	}

	for body := m.Body; len(body) > 0; {
		chunk := body[:min(len(body), milter.MaxBodyChunk)]
		body = body[len(chunk):]
		if err := w.macros(milter.CodeBody, dataMacros...); err != nil {
			return w.fail(StageBody, err)
		}
		act, err := w.timed(StageBody, func() (*milter.Action, error) { return w.sess.BodyChunk(chunk) })
		if err != nil {
			return w.fail(StageBody, err)
		}
		if act.Code == milter.ActSkip {
			break
		}
		if v := classify(act); v.verdict != verdictContinue {
			return w.finish(StageBody, v, nil)
		}
	}

	if err := w.macros(milter.CodeEOB, dataMacros...); err != nil {
		return w.fail(StageEnd, err)
	}
	var mods []milter.ModifyAction
	act, err = w.timed(StageEnd, func() (*milter.Action, error) {
		var err error
		var act *milter.Action
		mods, act, err = w.sess.End()
		return act, err
	})
	if err != nil {
		return w.fail(StageEnd, err)
	}
	return w.finish(StageEnd, classify(act), mods)
}

// finish records the message's verdict and ends the transaction with ABORT,
// as Postfix does after every transaction, successful or not.
func (w *worker) finish(stage string, v outcome, mods []milter.ModifyAction) bool {
	w.rec.verdict(stage, v, mods)
	if err := w.sess.Abort(); err != nil {
		w.rec.fail("abort", err)
		w.dropSession()
	}
	return true
}

// open dials the milter and sends CONNECT and HELO for the client of m. It
// returns ok when the session is ready for a transaction; when it is not,
// verdictGiven says whether the milter refused the client (a verdict, now
// recorded) rather than failing.
func (w *worker) open(m *Message) (ok, verdictGiven bool) {
	t := w.opts.Now()
	sess, err := w.client.Session()
	if err != nil {
		w.dialFailures++
		w.fail(StageOpen, err)
		return false, false
	}
	w.dialFailures = 0
	w.rec.observe(StageOpen, w.opts.Now().Sub(t))
	w.sess = sess

	client := []string{"{client_addr}", m.ClientAddr, "{client_name}", m.ClientName}
	connMacros := concat([]string{"j", "submission.hoster.example", "{daemon_name}", "submission", "v", "Postfix 3.7.11",
		"_", m.ClientName + " [" + m.ClientAddr + "]"}, client)
	if err := w.macros(milter.CodeConn, connMacros...); err != nil {
		return w.fail(StageConnect, err), false
	}
	family, port := milter.FamilyUnknown, uint16(0)
	if a, err := netip.ParseAddr(m.ClientAddr); err == nil {
		family, port = milter.FamilyInet, 40000+uint16(w.rec.sessions.Add(1)%20000)
		if a.Is6() && !a.Is4In6() {
			family = milter.FamilyInet6
		}
	}
	act, err := w.timed(StageConnect, func() (*milter.Action, error) {
		return sess.Conn(m.ClientName, family, port, m.ClientAddr)
	})
	if err != nil {
		return w.fail(StageConnect, err), false
	}
	if v := classify(act); v.verdict != verdictContinue {
		w.rec.verdict(StageConnect, v, nil)
		w.closeSession()
		return false, true
	}
	if err := w.macros(milter.CodeHelo, client...); err != nil {
		return w.fail(StageHelo, err), false
	}
	act, err = w.timed(StageHelo, func() (*milter.Action, error) { return sess.Helo(m.Helo) })
	if err != nil {
		return w.fail(StageHelo, err), false
	}
	if v := classify(act); v.verdict != verdictContinue {
		w.rec.verdict(StageHelo, v, nil)
		w.closeSession()
		return false, true
	}
	return true, false
}

func authMacros(m *Message) []string {
	if m.Login == "" {
		return nil
	}
	return []string{"{auth_authen}", m.Login, "{auth_type}", "PLAIN"}
}

func concat(parts ...[]string) []string {
	var n int
	for _, p := range parts {
		n += len(p)
	}
	out := make([]string, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// Verdicts a milter can give, as the report names them.
const (
	verdictContinue     = "continue"      // go on; at end of message: accept
	verdictAccept       = "accept"        // accept, no further milter processing
	verdictDiscard      = "discard"       // accept and throw away
	verdictTempfail     = "tempfail"      // 4xx
	verdictReject       = "reject"        // 5xx
	verdictNoRecipients = "no-recipients" // every recipient refused: no DATA
	verdictInvalid      = "invalid-reply" // a reply code that is neither 4xx nor 5xx
)

// outcome is a milter's answer at one step: the verdict and, for a custom
// reply, its SMTP code and text.
type outcome struct {
	verdict string
	code    int
	text    string
}

// reply returns the SMTP reply as the client would see it, or "" for a
// plain action without a text.
func (o outcome) reply() string {
	if o.code == 0 {
		return ""
	}
	return strconv.Itoa(o.code) + " " + o.text
}

func classify(act *milter.Action) outcome {
	switch act.Code {
	case milter.ActContinue, milter.ActSkip:
		return outcome{verdict: verdictContinue}
	case milter.ActAccept:
		return outcome{verdict: verdictAccept}
	case milter.ActDiscard:
		return outcome{verdict: verdictDiscard}
	case milter.ActTempFail:
		return outcome{verdict: verdictTempfail}
	case milter.ActReject:
		return outcome{verdict: verdictReject}
	case milter.ActReplyCode:
		o := outcome{code: act.SMTPCode, text: act.SMTPText}
		switch act.SMTPCode / 100 {
		case 4:
			o.verdict = verdictTempfail
		case 5:
			o.verdict = verdictReject
		default:
			o.verdict = verdictInvalid
		}
		return o
	default:
		return outcome{verdict: verdictInvalid, text: fmt.Sprintf("action %q", rune(act.Code))}
	}
}

// errorKind names the kind of a failure in a few stable words.
func errorKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ENOENT):
		return "no such socket"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection reset"
	case errors.Is(err, milter.ErrUnsupportedMilterVersion):
		return "unsupported milter version"
	default:
		return "protocol error"
	}
}

package milter

import (
	"context"
	"net"
	"net/textproto"
	"strconv"
	"time"

	gomilter "github.com/emersion/go-milter"
	"go.uber.org/zap"

	"github.com/abusemilter/abusemilter/scoring"
)

// backend is the go-milter handler of one MTA connection. Because every
// response it returns keeps the session (see keepSession), one backend
// lives exactly as long as its connection.
type backend struct {
	srv  *Server
	conn *sessionConn // nil only if go-milter ever calls NewMilter unexpectedly
	lim  limits

	cs  connState
	msg messageState

	// Per connection, for the decision log and trials (decisionlog.go,
	// trial.go):
	connID     string // random, names the connection in milter message ids
	seq        int    // messages started on the connection
	trialAsked bool   // the client sent the trial macro

	// Per message:
	engine  *scoring.Engine
	id      scoring.Identity
	mid     string // the milter's own message id, in every line of the message
	sink    BodySink
	monitor scoring.Verdict // a monitor-mode refusal seen before end of message
}

var _ gomilter.Milter = (*backend)(nil)

func (s *Server) newBackend(c *sessionConn) *backend {
	if c == nil {
		// Not expected with go-milter v0.5.0 (see chanListener); the session
		// still works, but a graceful stop cannot see its messages.
		s.log.Warn("milter backend created without its connection")
	}
	return &backend{
		srv:    s,
		conn:   c,
		connID: newConnID(),
		lim: limits{
			bodySample:  int(s.opts.BodySample),
			maxHeaders:  s.opts.MaxHeaders,
			headerBytes: s.opts.HeaderBytes,
			own:         s.ownHeaders,
		},
	}
}

// Connect implements gomilter.Milter.
func (b *backend) Connect(host, _ string, _ uint16, addr net.IP, m *gomilter.Modifier) (gomilter.Response, error) {
	b.cs.setClient(host, addr)
	b.cs.applyMacros(m.Macros, nil)
	if resp := b.checkTrial(m.Macros); resp != nil {
		return resp, nil
	}
	return gomilter.RespContinue, nil
}

// Helo implements gomilter.Milter.
func (b *backend) Helo(name string, m *gomilter.Modifier) (gomilter.Response, error) {
	b.cs.helo = name
	b.cs.applyMacros(m.Macros, nil)
	return gomilter.RespContinue, nil
}

// MailFrom implements gomilter.Milter: the message starts, the account is
// resolved and refused early when the engine already knows the answer.
func (b *backend) MailFrom(from string, m *gomilter.Modifier) (gomilter.Response, error) {
	b.endMessage(false)
	if resp := b.checkTrial(m.Macros); resp != nil {
		return resp, nil
	}
	b.msg.started = true
	b.msg.mailFrom = from
	b.seq++
	b.mid = b.connID + "." + strconv.Itoa(b.seq)
	start := time.Now()
	b.cs.applyMacros(m.Macros, &b.msg)
	b.engine = b.srv.engine.Load()
	if b.conn != nil {
		b.conn.setInMessage(true)
	}
	if b.engine == nil {
		b.log().Error("no engine configured, deferring message")
		b.endMessage(false)
		return gomilter.NewResponseStr(byte(gomilter.ActReplyCode), fallbackReply), nil
	}
	if b.isTrial() {
		b.engine = b.engine.DryRun() // trial.go: nothing is charged
	}
	env := b.cs.envelope(&b.msg)
	id, v := b.engine.CheckSender(env)
	b.id = id
	if v.Action != scoring.Accept {
		if v.Monitor {
			b.monitor = v
		} else {
			b.logDecision("mail", env, v, time.Since(start), nil, "")
			b.endMessage(false)
			return replyResponse(v), nil
		}
	}
	if b.srv.opts.NewBodySink != nil {
		b.sink = b.srv.opts.NewBodySink(env)
	}
	return gomilter.RespContinue, nil
}

// RcptTo implements gomilter.Milter. A recipient past the per-message cap is
// refused on its own with a custom reply (never the built-in reject or
// tempfail, which would make go-milter drop the transaction's state).
func (b *backend) RcptTo(rcpt string, m *gomilter.Modifier) (gomilter.Response, error) {
	b.cs.applyMacros(m.Macros, &b.msg)
	if b.engine == nil {
		b.engine = b.srv.engine.Load()
	}
	if b.engine == nil {
		return gomilter.NewResponseStr(byte(gomilter.ActReplyCode), fallbackReply), nil
	}
	start := time.Now()
	v := b.engine.CheckRecipient(len(b.msg.rcpts) + 1)
	if v.Action != scoring.Accept {
		if !v.Monitor {
			b.msg.rcptRefused++
			if b.msg.rcptRefused == 1 {
				b.logDecision("rcpt", b.cs.envelope(&b.msg), v, time.Since(start), nil, rcpt)
			}
			return replyResponse(v), nil
		}
		if b.monitor.Action == 0 {
			b.monitor = v
		}
	}
	b.msg.rcpts = append(b.msg.rcpts, rcpt)
	return gomilter.RespContinue, nil
}

// Header implements gomilter.Milter. The value goes through headerValues:
// the rules and everything else see it trimmed as before, the body sink gets
// the field as in the message.
func (b *backend) Header(name, value string, m *gomilter.Modifier) (gomilter.Response, error) {
	b.cs.applyMacros(m.Macros, &b.msg)
	value, field := headerValues(value, b.leadingSpace())
	b.msg.addHeader(name, value, b.lim)
	// go-milter keeps its own uncapped copy of every header field until
	// ABORT (m.Headers is that map); nothing here reads it, so empty it
	// to keep a message's memory within our caps.
	clear(m.Headers)
	if b.sink != nil {
		b.sink.Header(name, field)
	}
	return gomilter.RespContinue, nil
}

// leadingSpace reports whether the MTA sends header values with their
// leading whitespace (SMFIP_HDR_LEADSPC negotiated on this connection).
func (b *backend) leadingSpace() bool {
	return b.conn != nil && b.conn.leadingSpace()
}

// Headers implements gomilter.Milter.
func (b *backend) Headers(_ textproto.MIMEHeader, m *gomilter.Modifier) (gomilter.Response, error) {
	b.cs.applyMacros(m.Macros, &b.msg)
	return gomilter.RespContinue, nil
}

// BodyChunk implements gomilter.Milter: only the sample is kept.
func (b *backend) BodyChunk(chunk []byte, m *gomilter.Modifier) (gomilter.Response, error) {
	b.cs.applyMacros(m.Macros, &b.msg)
	b.msg.addBody(chunk, b.lim)
	if b.sink != nil {
		if _, err := b.sink.Write(chunk); err != nil {
			b.log().Warn("body sink failed, dropping it for this message", zap.Error(err))
			b.sink.Abort()
			b.sink = nil
		}
	}
	return gomilter.RespContinue, nil
}

// Body implements gomilter.Milter: end of message. The engine decides, the
// client's own X-Abuse-* headers are removed, monitor mode annotates.
func (b *backend) Body(m *gomilter.Modifier) (gomilter.Response, error) {
	b.cs.applyMacros(m.Macros, &b.msg)
	defer b.endMessage(false)
	if b.engine == nil {
		b.engine = b.srv.engine.Load()
	}
	if b.engine == nil {
		b.log().Error("no engine configured, deferring message")
		return keepSession{gomilter.NewResponseStr(byte(gomilter.ActReplyCode), fallbackReply)}, nil
	}
	start := time.Now() // the eom decision's "ms" is the time spent deciding
	env := b.cs.envelope(&b.msg)
	msg := b.msg.message()
	if b.sink != nil {
		// Sinks bound their own waits (the DKIM lookups their DNS budget,
		// clamd's verdict antivirus.timeout); the check's deadline starts
		// once they are done, so that a slow scan does not eat it.
		b.sink.Finish(context.Background(), env, msg)
		b.sink = nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.srv.opts.CheckTimeout)
	defer cancel()
	v := b.engine.CheckMessage(ctx, env, msg, b.id)
	if v.Action == scoring.Accept && b.monitor.Action != 0 {
		v = b.monitor // what enforce mode would have done before end of message
	}
	b.logDecision("eom", env, v, time.Since(start), msg, "")

	if err := b.removeOwnHeaders(m); err != nil {
		return nil, err
	}
	if err := b.addTrialHeaders(m, v); err != nil { // trial.go
		return nil, err
	}
	if b.engine.Mode() == scoring.Monitor {
		if err := m.AddHeader(HeaderVerdict, addedHeaderValue(VerdictHeader(v), b.leadingSpace())); err != nil {
			return nil, err
		}
		if f := FindingsHeader(v.Findings); f != "" {
			if err := m.AddHeader(HeaderFindings, addedHeaderValue(f, b.leadingSpace())); err != nil {
				return nil, err
			}
		}
	}
	if (v.Action == scoring.Accept || v.Action == scoring.Hold || v.Monitor) && b.srv.opts.ExtraHeaders != nil {
		for _, h := range b.srv.opts.ExtraHeaders(env, b.id) {
			if err := m.AddHeader(h.Name, addedHeaderValue(headerSafe(h.Value), b.leadingSpace())); err != nil {
				return nil, err
			}
		}
	}
	if v.Action == scoring.Hold && !v.Monitor {
		// SMFIR_QUARANTINE: Postfix moves the message to its hold queue,
		// Sendmail quarantines it; the client gets 250.
		if err := m.Quarantine(v.Text); err != nil {
			return nil, err
		}
	}
	resp := ResponseFor(v)
	if _, ok := resp.(keepSession); !ok {
		resp = keepSession{resp}
	}
	return resp, nil
}

// removeOwnHeaders deletes every copy of the milter's own headers (X-Abuse-*,
// the tracking header) the client sent, from the
// last to the first so that no deletion shifts the index of another.
func (b *backend) removeOwnHeaders(m *gomilter.Modifier) error {
	for _, name := range b.lim.own {
		for i := b.msg.ownHeaders[name]; i >= 1; i-- {
			if err := m.ChangeHeader(i, name, ""); err != nil {
				return err
			}
		}
	}
	return nil
}

// Abort implements gomilter.Milter. Postfix sends it after every
// transaction, so it is the normal end of a message, not a failure.
func (b *backend) Abort(_ *gomilter.Modifier) error {
	b.endMessage(true)
	return nil
}

// endMessage forgets the per-message state; the connection state stays.
func (b *backend) endMessage(aborted bool) {
	if aborted && b.msg.started && b.srv.log.Core().Enabled(zap.DebugLevel) {
		b.log().Debug("message aborted", zap.String("queue_id", b.msg.queueID), zap.String("mail_from", b.srv.opts.Redact.Address(b.msg.mailFrom)))
	}
	if b.sink != nil {
		b.sink.Abort()
	}
	b.msg = messageState{}
	b.engine, b.id, b.sink, b.monitor = nil, scoring.Identity{}, nil, scoring.Verdict{}
	b.mid = ""
	if b.conn != nil {
		b.conn.setInMessage(false)
	}
}

// tempfailMilter answers every session past the session cap with a
// tempfail at connect, so the MTA defers instead of waiting.
type tempfailMilter struct{ gomilter.NoOpMilter }

// Connect implements gomilter.Milter.
func (tempfailMilter) Connect(string, string, uint16, net.IP, *gomilter.Modifier) (gomilter.Response, error) {
	return gomilter.RespTempFail, nil
}

package milter

import (
	"encoding/base64"
	"net"
	"strings"

	gomilter "github.com/emersion/go-milter"
	"go.uber.org/zap"

	"github.com/abusemilter/abusemilter/scoring"
)

// A trial is a session that asks the running milter what it would do with
// a message (abusescan --milter), as rspamc asks rspamd. It is decided as
// real mail is, by the same engine (rules, directory, mode, locks and the
// refusals this instance holds), but over a limiter view that charges no
// counter and adds no strike (scoring.Engine.DryRun), it is counted apart
// (DecisionEvent.Trial), and its end of message adds the verdict and every
// finding as HeaderTrial and HeaderTrialFinding headers, for the client
// to print.
//
// A session is a trial only when both hold:
//   - it was accepted on a TrialListener (the daemon's trial.listen, a
//     socket of its own that Postfix is never pointed at), and
//   - its client sent the MacroTrial macro (at connect or MAIL).
//
// Postfix and Sendmail send only the macros they know, with values of
// their own, and no SMTP client can add one: real mail never carries
// MacroTrial. A session on the main listener that sends it anyway is
// refused at once (TrialRefusedReply), so a trial pointed at the wrong
// socket charges nothing either; a session on the trial listener without
// it is real mail, charged as usual.
const (
	// MacroTrial is the macro a trial client sends, with any non-empty value.
	MacroTrial = "{abusemilter_trial}"
	// HeaderTrial carries a trial's verdict, as X-Abuse-Verdict does, with
	// "; mode=...; milter_msg_id=..." appended.
	HeaderTrial = "X-Abuse-Trial"
	// HeaderTrialFinding carries one finding of a trial:
	// "RULE; clause=CLAUSE; score=N; reason=TEXT", the reason last (it may
	// hold "; "); a reason that is not printable ASCII, or that holds "=?",
	// is sent as "reason64=BASE64" of its UTF-8 instead.
	HeaderTrialFinding = "X-Abuse-Trial-Finding"
	// TrialRefusedReply answers the trial macro outside the trial listener.
	TrialRefusedReply = "550 5.7.0 abusemilter: trials are taken on the trial listener only (trial.listen), not here"
)

// TrialListener marks ln as the trial listener: Server.Serve lets its
// sessions be trials (see MacroTrial).
func TrialListener(ln net.Listener) net.Listener { return trialListener{ln} }

type trialListener struct{ net.Listener }

// isTrial reports whether the current session is a trial.
func (b *backend) isTrial() bool {
	return b.trialAsked && b.conn != nil && b.conn.trialListener
}

// checkTrial notes the trial macro; it returns the refusal for a session
// that asks for a trial outside the trial listener, else nil.
func (b *backend) checkTrial(macros map[string]string) gomilter.Response {
	if macros[MacroTrial] == "" {
		return nil
	}
	b.trialAsked = true
	if b.isTrial() {
		return nil
	}
	b.log().Warn("trial macro outside the trial listener, session refused", zap.String("macro", MacroTrial))
	return gomilter.NewResponseStr(byte(gomilter.ActReplyCode), TrialRefusedReply)
}

// addTrialHeaders adds a trial's verdict and findings at end of message.
func (b *backend) addTrialHeaders(m *gomilter.Modifier, v scoring.Verdict) error {
	if !b.isTrial() {
		return nil
	}
	verdict := VerdictHeader(v) + "; mode=" + string(b.engine.Mode()) + "; milter_msg_id=" + b.mid
	if err := m.AddHeader(HeaderTrial, addedHeaderValue(headerSafe(verdict), b.leadingSpace())); err != nil {
		return err
	}
	for _, f := range v.Findings {
		value := f.Rule + "; clause=" + string(f.Clause) + "; score=" + formatScore(f.Score) + "; " + trialReason(clip(f.Reason, maxLoggedReason))
		if err := m.AddHeader(HeaderTrialFinding, addedHeaderValue(headerSafe(value), b.leadingSpace())); err != nil {
			return err
		}
	}
	return nil
}

// trialReason renders a finding's reason for HeaderTrialFinding.
func trialReason(r string) string {
	plain := !strings.Contains(r, "=?")
	for i := 0; i < len(r) && plain; i++ {
		plain = r[i] >= 0x20 && r[i] <= 0x7e
	}
	if plain {
		return "reason=" + r
	}
	return "reason64=" + base64.StdEncoding.EncodeToString([]byte(r))
}

package milter

import (
	"encoding/hex"
	"math/rand/v2"
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/abusemilter/abusemilter/scoring"
)

// DecisionEvent is what Observer.Decision hears of one decision.
type DecisionEvent struct {
	// Stage is "mail" (a refusal at MAIL FROM), "rcpt" (the first
	// recipient of a message refused past the per-message cap) or "eom"
	// (end of message). A message is counted at most once per stage.
	Stage string
	// Mode is the engine's mode; in monitor mode Verdict.Action is what
	// enforce mode would have done.
	Mode    scoring.Mode
	Verdict scoring.Verdict
	// Elapsed is the time spent deciding at this stage (at end of message:
	// the DKIM sink, the rules, DNS and the rate store).
	Elapsed time.Duration
	// Trial is set for a trial (abusescan --milter): nothing was charged.
	Trial bool
}

// Bounds of what the decision line quotes from a message.
const (
	maxLoggedMessageID = 250
	maxLoggedReason    = 300
	maxLoggedAddresses = 10
)

// noRedact is the Redactor when none is set.
type noRedact struct{}

func (noRedact) Address(s string) string { return s }
func (noRedact) Text(s string) string    { return s }

// newConnID names a connection in milter message ids: 12 hex digits,
// random, so ids do not repeat across restarts.
func newConnID() string {
	var b [6]byte
	v := rand.Uint64()
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
	return hex.EncodeToString(b[:])
}

// log is the logger of the current session and message: every line of a
// message carries the session number and the milter message id.
func (b *backend) log() *zap.Logger {
	l := b.srv.log
	if b.conn != nil {
		l = b.conn.log
	}
	if b.mid != "" {
		l = l.With(zap.String("milter_msg_id", b.mid))
	}
	return l
}

// logDecision writes the one structured line per decision, and tells the
// observer. msg is the message at end of message (nil before); rcpt is the
// refused recipient at the RCPT stage.
//
// A MAIL- or RCPT-stage refusal is answered by Postfix with a line such as
// "NOQUEUE: milter-reject: MAIL from NAME[ADDR]: REPLY; from=<...> proto=ESMTP
// helo=<...>": client_name, client, reply, mail_from, rcpt and helo carry
// the same values, so the two lines join (docs/guide.md). Postfix does not
// tell milters the protocol (SMTP or ESMTP), so proto is not logged.
func (b *backend) logDecision(stage string, env *scoring.Envelope, v scoring.Verdict, elapsed time.Duration, msg *scoring.Message, rcpt string) {
	red := b.srv.opts.Redact
	client := ""
	if env.ClientAddr.IsValid() {
		client = env.ClientAddr.String()
	}
	mode := b.engine.Mode()
	trial := b.isTrial()
	fields := make([]zap.Field, 0, 32)
	fields = append(fields,
		zap.String("stage", stage),
		zap.String("milter_msg_id", b.mid),
		zap.String("queue_id", env.QueueID),
		zap.String("account", red.Address(b.id.Name())),
		zap.String("identified_by", string(b.id.How)),
		zap.String("login", red.Address(env.AuthLogin)),
		zap.String("client", client),
		zap.String("client_name", env.ClientName),
		zap.String("helo", env.Helo),
		zap.String("mail_from", red.Address(env.MailFrom)),
	)
	if rcpt != "" {
		fields = append(fields, zap.String("rcpt", red.Address(strings.Trim(rcpt, "<>"))))
	}
	fields = append(fields,
		zap.Int("rcpts", len(env.Rcpts)),
		zap.String("action", v.Action.String()),
		zap.Int("code", v.Code),
	)
	if v.Action != scoring.Accept {
		// What the client was told (in monitor mode: would have been told).
		fields = append(fields, zap.String("reply", replyText(v)))
	}
	fields = append(fields,
		zap.String("rule", v.Rule),
		zap.String("clause", string(v.Clause)),
		zap.Strings("rules", v.RuleIDs()),
		zap.Float64("score", v.Score),
		zap.Bool("monitor", v.Monitor),
		zap.String("mode", string(mode)),
	)
	if trial {
		fields = append(fields, zap.Bool("trial", true))
	}
	if msg != nil {
		fields = appendMessageFields(fields, msg, red)
	}
	if len(v.Findings) > 0 {
		fields = append(fields, zap.Array("findings", findingsLog{v.Findings, red}))
	}
	if b.msg.rcptRefused > 0 {
		fields = append(fields, zap.Int("rcpts_refused", b.msg.rcptRefused))
	}
	if v.LimiterError != "" {
		fields = append(fields, zap.String("limiter_error", v.LimiterError))
	}
	if v.RecordError != "" {
		fields = append(fields, zap.String("record_error", v.RecordError))
	}
	if v.CampaignError != "" {
		fields = append(fields, zap.String("campaign_error", v.CampaignError))
	}
	if b.msg.bodyTruncated {
		fields = append(fields, zap.Int64("body_bytes", b.msg.bodySize))
	}
	fields = append(fields, malwareFields(v)...)
	fields = append(fields, zap.Float64("ms", float64(elapsed.Microseconds())/1000))
	l := b.srv.log
	if b.conn != nil {
		l = b.conn.log
	}
	l.Info("decision", fields...)
	b.srv.opts.Observer.Decision(DecisionEvent{Stage: stage, Mode: mode, Verdict: v, Elapsed: elapsed, Trial: trial})
}

// replyText is the SMTP reply the milter sends for a refusal.
func replyText(v scoring.Verdict) string {
	if !validReply(v.Code, v.EnhancedCode) {
		return fallbackReply
	}
	return v.Reply()
}

// appendMessageFields adds what the rules saw of the headers: the header
// From and Sender addresses, the Message-ID and the Subject's length (its
// decoded characters, never its text). Nothing of the body is logged.
func appendMessageFields(fields []zap.Field, msg *scoring.Message, red Redactor) []zap.Field {
	fields = append(fields, zap.Strings("header_from", headerAddresses(msg, "From", red)))
	if msg.Count("Sender") > 0 {
		fields = append(fields, zap.Strings("header_sender", headerAddresses(msg, "Sender", red)))
	}
	fields = append(fields, zap.String("message_id", clip(strings.TrimSpace(msg.Get("Message-Id")), maxLoggedMessageID)))
	if msg.Count("Subject") > 0 {
		fields = append(fields, zap.Int("subject_len", utf8.RuneCountInString(strings.TrimSpace(scoring.DecodeHeader(msg.Get("Subject"))))))
	}
	return fields
}

// headerAddresses lists the addresses of every header field with the name,
// parsed as the rules parse them (salvaged when the header does not parse);
// a field with none is logged as its value, cut short, so that a forged
// unparseable From still shows.
func headerAddresses(msg *scoring.Message, name string, red Redactor) []string {
	out := []string{}
	for _, raw := range msg.Values(name) {
		addrs, _ := scoring.ParseAddressList(raw)
		if len(addrs) == 0 {
			if a := salvage(raw); a != "" {
				out = append(out, red.Address(a))
			} else {
				out = append(out, red.Text(clip(strings.TrimSpace(raw), 100)))
			}
		}
		for _, a := range addrs {
			out = append(out, red.Address(a.Address))
		}
		if len(out) >= maxLoggedAddresses {
			return out[:maxLoggedAddresses]
		}
	}
	return out
}

// salvage returns the text between the last angle brackets of a header
// value that does not parse, when it looks like an address.
func salvage(raw string) string {
	lt, gt := strings.LastIndexByte(raw, '<'), strings.LastIndexByte(raw, '>')
	if lt >= 0 && gt > lt {
		if a := strings.TrimSpace(raw[lt+1 : gt]); strings.Count(a, "@") == 1 && !strings.ContainsAny(a, " \t\r\n") {
			return a
		}
	}
	return ""
}

// clip cuts s to at most n bytes at a character boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// findingsLog logs every finding as {rule, clause, score, reason}. Reasons
// are the rules' own short texts (an address, a domain, a count, a link's
// host), never body text; they are cut to maxLoggedReason bytes and
// redacted like the addresses.
type findingsLog struct {
	fs  []scoring.Finding
	red Redactor
}

// MarshalLogArray implements zapcore.ArrayMarshaler.
func (f findingsLog) MarshalLogArray(enc zapcore.ArrayEncoder) error {
	for _, fd := range f.fs {
		if err := enc.AppendObject(findingLog{fd, f.red}); err != nil {
			return err
		}
	}
	return nil
}

type findingLog struct {
	f   scoring.Finding
	red Redactor
}

// MarshalLogObject implements zapcore.ObjectMarshaler.
func (f findingLog) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("rule", f.f.Rule)
	enc.AddString("clause", string(f.f.Clause))
	enc.AddFloat64("score", f.f.Score)
	if f.f.Decisive {
		enc.AddBool("decisive", true)
	}
	enc.AddString("reason", f.red.Text(clip(f.f.Reason, maxLoggedReason)))
	return nil
}

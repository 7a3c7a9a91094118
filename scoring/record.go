package scoring

import (
	"context"

	"github.com/abusemilter/abusemilter/ratelimit"
)

// Bounds of what a record keeps of a message's own text.
const (
	recordHeaderMax = 200 // From, Subject
	recordReasonMax = 300 // one finding's reason
)

// newRecord starts the abuse desk's record of a message at end of message:
// who sent it and what it says it is. The verdict is added by
// recordDecision, the instance, time and usage by the store.
func newRecord(env *Envelope, msg *Message, id Identity) *ratelimit.MessageRecord {
	rec := &ratelimit.MessageRecord{
		QueueID:      env.QueueID,
		MessageID:    ratelimit.NormalizeMessageID(msg.Get("Message-Id")),
		Account:      id.Name(),
		IdentifiedBy: string(id.How),
		Login:        env.AuthLogin,
		Sender:       env.MailFrom,
		Recipients:   len(env.Rcpts),
		From:         clip(msg.Get("From"), recordHeaderMax),
		Subject:      clip(msg.Get("Subject"), recordHeaderMax),
		Stage:        "eom",
	}
	if env.ClientAddr.IsValid() {
		rec.Client = env.ClientAddr.String()
	}
	return rec
}

// recordDecision completes rec with the verdict, the limiter's decision and
// the findings, and has the store keep it (held: in the held index too).
func (e *Engine) recordDecision(ctx context.Context, rec *ratelimit.MessageRecord, v Verdict, d ratelimit.Decision) error {
	r := *rec
	r.Action, r.Monitor, r.Rule, r.Clause, r.Score = v.Action.String(), v.Monitor, v.Rule, string(v.Clause), v.Score
	r.Reply = v.Reply()
	r.LimiterError = v.LimiterError
	for _, f := range v.Findings {
		r.Findings = append(r.Findings, ratelimit.RecordFinding{Rule: f.Rule, Clause: string(f.Clause), Score: f.Score, Reason: clip(f.Reason, recordReasonMax)})
	}
	r.Usage, r.Strikes, r.Locked = d.Usage, d.Strikes, d.Locked
	if d.Lock != nil {
		r.LockReason = d.Lock.Reason
	}
	if d.Exceeded != "" {
		r.Exceeded = &ratelimit.Usage{Dimension: d.Exceeded, Rate: d.Rate, Used: d.Rate.Limit}
		r.RetryAfter = d.RetryAfter
	}
	r.Held = v.Action == Hold && !v.Monitor
	recorder, _ := ratelimit.As[ratelimit.Recorder](e.limiter) // settle checked it is one
	return recorder.RecordDecision(ctx, r)
}

// clip cuts s to at most n bytes, on a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xc0 == 0x80 {
		n--
	}
	return s[:n]
}

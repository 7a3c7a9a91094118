package scan

import (
	"context"
	"time"

	"github.com/abusemilter/abusemilter/internal/daemon"
	"github.com/abusemilter/abusemilter/ratelimit"
	"github.com/abusemilter/abusemilter/scoring"
)

// replayResult is what the rate replay made of one message.
type replayResult struct {
	Action     scoring.Action
	Rule       string
	RetryAfter time.Duration
	Locked     bool   // the account was locked when this message came
	Skipped    string // why the message was not replayed, if it was not
}

// lockEvent is a moment the replay locked an account.
type lockEvent struct {
	Account string
	At      time.Time
	Where   string // the message whose strike locked it
}

// replay feeds the spooled messages in Date order through an engine over
// an in-memory limiter with the config's limits and strikes, whose clock
// is each message's Date: the engine settles the rules' findings of the
// first pass as the milter's end-of-message call would have (a message the
// rules accepted is checked and charged, one they rejected adds a strike,
// a locked account's mail is refused); one refused before the rules
// (unknown account) or without a readable Date is not replayed (see
// skipReason). Each message's outcome goes to its slot in the spool, read
// back when the records are reported; it returns the moments accounts
// were locked (or, in monitor mode, would have been). Its memory is the
// limiter's (accounts and windows) and the spool's merge buffers.
func (s *Scan) replay(ctx context.Context, sp *spool) ([]lockEvent, error) {
	var clock time.Time
	lim := &decisionRecorder{Limiter: ratelimit.NewMemory(daemon.Policy(s.cfg), func() time.Time { return clock })}
	defer lim.Close()
	engine := s.newEngine(lim)

	var locks []lockEvent
	err := sp.byDate(func(r *replayEntry, n int) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		clock = r.Date
		lim.reset()
		v := engine.Settle(ctx, r.Env, r.MessageID, r.identity(), r.Findings, r.Score)
		res := &replayResult{Action: v.Action, Rule: v.Rule, RetryAfter: v.RetryAfter, Locked: v.Rule == ratelimit.RuleAccountLocked}
		if lim.err != nil {
			res.Skipped = "rate store: " + lim.err.Error()
		} else if lim.last.NewlyLocked || lim.last.WouldLock {
			locks = append(locks, lockEvent{Account: r.Account, At: r.Date, Where: r.Where})
		}
		return sp.setOutcome(n, v, res)
	})
	return locks, err
}

// decisionRecorder keeps the store's last decision, which the engine's
// verdict does not carry (whether this message locked the account).
type decisionRecorder struct {
	ratelimit.Limiter
	last ratelimit.Decision
	err  error
}

// CheckAndCharge calls the store and records its answer.
func (l *decisionRecorder) CheckAndCharge(ctx context.Context, req ratelimit.Request) (ratelimit.Decision, error) {
	l.last, l.err = l.Limiter.CheckAndCharge(ctx, req)
	return l.last, l.err
}

// reset forgets the last decision before the next message.
func (l *decisionRecorder) reset() { l.last, l.err = ratelimit.Decision{}, nil }

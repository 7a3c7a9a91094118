package scan

import (
	"context"
	"sort"
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

// replay feeds the scanned messages in Date order through an engine over
// an in-memory limiter with the config's limits and strikes, whose clock
// is each message's Date: the engine settles the rules' findings of the
// first pass as the milter's end-of-message call would have (a message the
// rules accepted is checked and charged, one they rejected adds a strike,
// a locked account's mail is refused); one refused before the rules
// (unknown account) is not counted. It sets each record's Replay and final
// Verdict and returns the moments accounts were locked (or, in monitor
// mode, would have been).
func (s *Scan) replay(ctx context.Context, recs []*record) []lockEvent {
	var clock time.Time
	lim := &decisionRecorder{Limiter: ratelimit.NewMemory(daemon.Policy(s.cfg), func() time.Time { return clock })}
	defer lim.Close()
	engine := s.newEngine(lim)

	byDate := make([]*record, 0, len(recs))
	for _, r := range recs {
		switch {
		case r.Date.IsZero():
			r.Replay = &replayResult{Action: r.Rules.Action, Skipped: "no readable Date header"}
		case r.id.Account == nil || (r.Rules.Action != scoring.Accept && r.Rules.Clause == scoring.Policy):
			// Refused before the rules ran (unknown login or client): the
			// milter does not call the limiter for it.
			r.Replay = &replayResult{Action: r.Rules.Action, Skipped: "refused before the rules ran"}
		default:
			byDate = append(byDate, r)
		}
	}
	sort.SliceStable(byDate, func(i, j int) bool { return byDate[i].Date.Before(byDate[j].Date) })

	var locks []lockEvent
	for _, r := range byDate {
		clock = r.Date
		lim.reset()
		v := engine.Settle(ctx, r.env, r.MessageID, r.id, r.Rules.Findings, r.Rules.Score)
		res := &replayResult{Action: v.Action, Rule: v.Rule, RetryAfter: v.RetryAfter, Locked: v.Rule == ratelimit.RuleAccountLocked}
		r.Replay, r.Verdict = res, v
		if lim.err != nil {
			res.Skipped = "rate store: " + lim.err.Error()
			continue
		}
		if lim.last.NewlyLocked || lim.last.WouldLock {
			locks = append(locks, lockEvent{Account: r.Account, At: r.Date, Where: r.where()})
		}
	}
	return locks
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

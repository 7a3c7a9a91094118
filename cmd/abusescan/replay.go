package main

import (
	"context"
	"sort"
	"time"

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

// replay feeds the scanned messages in Date order through an in-memory
// limiter with the config's limits and strikes and a clock set to each
// message's Date, as the milter's end-of-message call would have: a message
// the rules accepted is checked and charged, one they rejected adds a
// strike, one refused before the rules (unknown account) is not counted.
// It sets each record's Replay and final Verdict and returns the locks.
func (s *scan) replay(ctx context.Context, recs []*record) []lockEvent {
	var clock time.Time
	lim := ratelimit.NewMemory(s.cfg.Policy(), func() time.Time { return clock })
	defer lim.Close()

	byDate := make([]*record, 0, len(recs))
	for _, r := range recs {
		switch {
		case r.Date.IsZero():
			r.Replay = &replayResult{Action: r.Rules.Action, Skipped: "no readable Date header"}
		case r.Account == "" || (r.Rules.Action != scoring.Accept && r.Rules.Clause == scoring.Policy):
			// Refused before the rules ran (unknown login or client): the
			// milter does not call the limiter for it.
			r.Replay = &replayResult{Action: r.Rules.Action, Skipped: "refused before the rules ran"}
		default:
			byDate = append(byDate, r)
		}
	}
	sort.SliceStable(byDate, func(i, j int) bool { return byDate[i].Date.Before(byDate[j].Date) })

	monitor := s.engineOpt.Mode == scoring.Monitor
	lockAction := scoring.Defer
	if s.cfg.Strikes.LockAction == "reject" {
		lockAction = scoring.Reject
	}
	var locks []lockEvent
	for _, r := range byDate {
		clock = r.Date
		req := ratelimit.Request{
			Account: r.Account, Sender: r.EnvelopeFrom, Authenticated: true,
			Recipients: r.Recipients, MessageID: r.MessageID, Monitor: monitor,
		}
		if r.Rules.Action == scoring.Reject {
			req.Outcome = ratelimit.Strike
		}
		d, err := lim.CheckAndCharge(ctx, req)
		res := &replayResult{Action: r.Rules.Action, Rule: r.Rules.Rule}
		r.Replay = res
		if err != nil {
			res.Skipped = "rate store: " + err.Error()
			continue
		}
		if d.NewlyLocked || d.WouldLock {
			locks = append(locks, lockEvent{Account: r.Account, At: r.Date, Where: r.where()})
		}
		switch {
		case r.Rules.Action == scoring.Reject || d.Allowed:
		case d.Locked:
			res.Locked = true
			res.Action, res.Rule = lockAction, ratelimit.RuleAccountLocked
			if lockAction == scoring.Reject {
				r.Verdict = scoring.RejectVerdict(scoring.Policy, ratelimit.RuleAccountLocked, "account locked", r.Rules.Findings, r.Rules.Score)
			} else {
				r.Verdict = scoring.DeferVerdict(scoring.Policy, ratelimit.RuleAccountLocked, "account locked", 0, r.Rules.Findings)
			}
		default:
			res.Action, res.Rule, res.RetryAfter = scoring.Defer, d.Exceeded.RuleID(), d.RetryAfter
			r.Verdict = scoring.DeferVerdict(scoring.SpamVolume, d.Exceeded.RuleID(), d.Rate.String(), d.RetryAfter, r.Rules.Findings)
		}
		r.Verdict.Monitor = monitor && r.Verdict.Action != scoring.Accept
	}
	return locks
}

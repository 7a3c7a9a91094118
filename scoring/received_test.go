package scoring_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/ratelimit"
	"github.com/abusemilter/abusemilter/scoring"
)

func headerNames(hs []scoring.Header) string {
	var names []string
	for _, h := range hs {
		names = append(names, h.Name)
	}
	return strings.Join(names, ",")
}

func TestStripTraceAt(t *testing.T) {
	m := parse(t, "Return-Path: <alice@example.com>\nDelivered-To: bob@example.net\n"+
		"Received: from mx.provider.test by mx.recipient.example; Fri, 20 Nov 2026 11:00:07 +0000\n"+
		"X-Spam-Status: No\n"+
		"Received: from pc (pc [203.0.113.9])\n\tby Smtp.Provider.TEST (Postfix) with ESMTPSA; Fri, 20 Nov 2026 11:00:05 +0000\n"+
		"From: alice@example.com\nX-Mailer: m\nSubject: s\n\nbody\n")
	for _, mtas := range [][]string{{"provider.test"}, {".Provider.test "}, {"smtp.provider.test", "other.test"}} {
		kept, trace := scoring.StripTraceAt(m.Headers, mtas)
		if got := headerNames(kept); got != "Received,From,X-Mailer,Subject" || headerNames(trace) != "Return-Path,Delivered-To,Received,X-Spam-Status" {
			t.Errorf("own MTAs %q: kept %s, trace %s", mtas, got, headerNames(trace))
		}
	}
	// The own MTA not named (or none configured): StripTrace decides.
	for _, mtas := range [][]string{nil, {"elsewhere.test"}, {"ider.test"}} {
		kept, trace := scoring.StripTraceAt(m.Headers, mtas)
		wantKept, wantTrace := scoring.StripTrace(m.Headers)
		if headerNames(kept) != headerNames(wantKept) || headerNames(trace) != headerNames(wantTrace) || headerNames(kept) != "From,X-Mailer,Subject" {
			t.Errorf("own MTAs %q: kept %s, trace %s", mtas, headerNames(kept), headerNames(trace))
		}
	}
	if len(m.Headers) != 8 {
		t.Errorf("StripTraceAt changed its input: %d headers", len(m.Headers))
	}
	r := scoring.AsReceivedAt(m, "scan", time.Time{}, []string{"provider.test"})
	if headerNames(m.Headers) != "Received,From,X-Mailer,Subject" || len(r.Trace) != 4 || !r.Now.Equal(time.Date(2026, 11, 20, 11, 0, 7, 0, time.UTC)) {
		t.Errorf("AsReceivedAt: headers %s, %d trace, now %v", headerNames(m.Headers), len(r.Trace), r.Now)
	}
}

// TestSettle checks that settling findings computed earlier gives what
// CheckMessage gives: a limit deferral for an accepted message and a
// strike, then a lock, for rejected ones.
func TestSettle(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	policy := ratelimit.Policy{
		Limits:  ratelimit.Limits{ratelimit.AccountMessages: {{Limit: 1, Window: time.Hour}}},
		Strikes: ratelimit.StrikePolicy{Threshold: 2, Window: time.Hour},
	}
	lim := ratelimit.NewMemory(policy, func() time.Time { return now })
	e := scoring.NewEngine(testDirectory(t), lim, scoring.Options{})
	env := &scoring.Envelope{AuthLogin: "alice", MailFrom: "alice@example.com", Rcpts: []string{"bob@example.org"}, Time: now}
	id := e.Identify(env)
	ctx := context.Background()

	forged, score := e.Evaluate(ctx, env, msg("PayPal <service@paypal.com>"), id.Account)
	if v := e.Settle(ctx, env, "<1@example.com>", id, nil, 0); v.Action != scoring.Accept {
		t.Fatalf("first clean message: %s", v.Reply())
	}
	if v := e.Settle(ctx, env, "<2@example.com>", id, nil, 0); v.Action != scoring.Defer || v.Rule != "ACCOUNT_MSG_RATE" {
		t.Fatalf("second clean message: %s, want ACCOUNT_MSG_RATE", v.Reply())
	}
	for i, want := range []string{"FROM_DOMAIN_NOT_OWNED", "FROM_DOMAIN_NOT_OWNED"} {
		if v := e.Settle(ctx, env, "<forged"+string(rune('a'+i))+"@example.com>", id, forged, score); v.Action != scoring.Reject || v.Rule != want {
			t.Fatalf("forged message %d: %s", i+1, v.Reply())
		}
	}
	now = now.Add(2 * time.Hour) // past the rate window: only the lock refuses
	if v := e.Settle(ctx, env, "<3@example.com>", id, nil, 0); v.Action != scoring.Defer || v.Rule != ratelimit.RuleAccountLocked {
		t.Fatalf("after two strikes: %s, want ACCOUNT_LOCKED", v.Reply())
	}
	// Without an account there is nothing to charge: the findings decide.
	if v := e.Settle(ctx, env, "<4@example.com>", scoring.Identity{}, nil, 0); v.Action != scoring.Accept {
		t.Fatalf("no account: %s", v.Reply())
	}
}

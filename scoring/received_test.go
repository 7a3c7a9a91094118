package scoring_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/identity"
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

// TestAsReceivedResentAndNoFrom: a resent message's Resent-From and
// Resent-Sender are the account's; a message without a usable From gets
// the first Return-Path that is an address, else the agent, as its
// envelope sender, and never the null sender.
func TestAsReceivedResentAndNoFrom(t *testing.T) {
	e := scoring.NewEngine(nil, nil, scoring.Options{})
	judge := func(raw string) (scoring.Resubmission, scoring.Verdict) {
		m, err := scoring.ParseBytes([]byte(raw), 1000)
		if err != nil {
			t.Fatal(err)
		}
		r := scoring.AsReceived(m, "scan", testNow)
		r.Env.Time = r.Now
		return r, e.CheckMessage(context.Background(), r.Env, m, scoring.Identity{Account: r.Account, How: identity.ByLogin})
	}
	const rest = "To: bob@example.net\nSubject: s\nMessage-ID: <1@a.example>\nDate: " + testDate + "\n\nbody\n"
	r, v := judge("Return-Path: <list-bounces@lists.example>\nFrom: Carol <carol@a.example>\n" +
		"Resent-From: Dan <dan@b.example>\nResent-Sender: robot@c.example\nResent-Date: " + testDate + "\n" + rest)
	if v.Action != scoring.Accept || slices.Contains(v.RuleIDs(), scoring.RuleFromNotOwned) {
		t.Errorf("resent message: %s %v (account %+v)", v.Reply(), v.RuleIDs(), r.Account)
	}
	for _, tt := range []struct{ raw, sender string }{
		{"Return-Path: <>\nReturn-Path: <bounce@d.example>\n" + rest, "bounce@d.example"},
		{"Return-Path: <>\nSender: agent@e.example\n" + rest, "agent@e.example"},
		{"From: undisclosed\nResent-From: f@g.example\n" + rest, "f@g.example"},
		{"Return-Path: <>\n" + rest, ""},
	} {
		r, v := judge(tt.raw)
		if r.Env.MailFrom != tt.sender || r.Env.SenderUnknown != (tt.sender == "") {
			t.Errorf("%.40q: envelope sender %q unknown %v, want %q", tt.raw, r.Env.MailFrom, r.Env.SenderUnknown, tt.sender)
		}
		if slices.Contains(v.RuleIDs(), scoring.RuleNullSenderAuth) || slices.Contains(v.RuleIDs(), scoring.RuleFromNotOwned) {
			t.Errorf("%.40q: %v", tt.raw, v.RuleIDs())
		}
	}
}

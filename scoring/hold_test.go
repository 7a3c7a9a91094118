package scoring_test

import (
	"context"
	"testing"

	"github.com/abusemilter/abusemilter/ratelimit"
	"github.com/abusemilter/abusemilter/scoring"
)

// firing returns rules that always fire with the given scores, the IDs in
// decisive decisive.
func firing(specs map[string]float64, decisive ...string) []scoring.Rule {
	var out []scoring.Rule
	for id, score := range specs {
		r := scoring.Rule{ID: id, Clause: scoring.ForgedHeaders, Score: score, Check: func(*scoring.Check) (string, bool) { return "because", true }}
		for _, d := range decisive {
			r.Decisive = r.Decisive || d == id
		}
		out = append(out, r)
	}
	return out
}

// TestHoldDecisions: a rule's or clause's action applies when it fires,
// the hold threshold holds below the reject threshold, the most severe
// action wins, and monitor mode reports a hold it never enforces.
func TestHoldDecisions(t *testing.T) {
	env := &scoring.Envelope{AuthLogin: "alice", MailFrom: "alice@example.com", Rcpts: []string{"bob@example.org"}}
	cases := []struct {
		name     string
		rules    map[string]float64
		decisive []string
		opts     scoring.Options
		want     scoring.Action
		rule     string
	}{
		{"rule action hold", map[string]float64{"A": 1}, nil, scoring.Options{Actions: map[string]scoring.Action{"A": scoring.Hold}}, scoring.Hold, "A"},
		{"clause action hold", map[string]float64{"A": 1}, nil, scoring.Options{Actions: map[string]scoring.Action{"forged-headers": scoring.Hold}}, scoring.Hold, "A"},
		{"rule wins over clause", map[string]float64{"A": 1}, nil,
			scoring.Options{Actions: map[string]scoring.Action{"forged-headers": scoring.Hold, "A": scoring.Accept}}, scoring.Accept, ""},
		{"accept action: a decisive rule only scores", map[string]float64{"A": 1}, []string{"A"},
			scoring.Options{Actions: map[string]scoring.Action{"A": scoring.Accept}}, scoring.Accept, ""},
		{"hold action of a decisive rule", map[string]float64{"A": 1}, []string{"A"},
			scoring.Options{Actions: map[string]scoring.Action{"A": scoring.Hold}}, scoring.Hold, "A"},
		{"hold threshold", map[string]float64{"A": 3, "B": 2}, nil, scoring.Options{HoldThreshold: 5}, scoring.Hold, "A"},
		{"below the hold threshold", map[string]float64{"A": 3}, nil, scoring.Options{HoldThreshold: 5}, scoring.Accept, ""},
		{"reject threshold beats a hold", map[string]float64{"A": 6, "B": 5}, nil,
			scoring.Options{HoldThreshold: 5, Actions: map[string]scoring.Action{"B": scoring.Hold}}, scoring.Reject, "A"},
		{"reject action beats hold action", map[string]float64{"A": 1, "B": 1}, nil,
			scoring.Options{Actions: map[string]scoring.Action{"A": scoring.Hold, "B": scoring.Reject}}, scoring.Reject, "B"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.opts.Rules = firing(c.rules, c.decisive...)
			e := scoring.NewEngine(testDirectory(t), nil, c.opts)
			id, _ := e.CheckSender(env)
			v := e.CheckMessage(context.Background(), env, msg("alice@example.com"), id)
			if v.Action != c.want || v.Rule != c.rule {
				t.Fatalf("%s: %v rule %q, want %v rule %q", c.name, v.Action, v.Rule, c.want, c.rule)
			}
			if v.Action == scoring.Hold && (v.Code != 250 || v.Text != "Held for review under the e-mail abuse policy (forged-headers: "+c.rule+")") {
				t.Errorf("hold verdict %s", v.Reply())
			}
		})
	}
	t.Run("monitor mode reports the hold and does not enforce it", func(t *testing.T) {
		e := scoring.NewEngine(testDirectory(t), nil, scoring.Options{Mode: scoring.Monitor, HoldThreshold: 1, Rules: firing(map[string]float64{"A": 2})})
		id, _ := e.CheckSender(env)
		v := e.CheckMessage(context.Background(), env, msg("alice@example.com"), id)
		if v.Action != scoring.Hold || !v.Monitor {
			t.Fatalf("monitor: %v monitor=%v, want hold, monitor", v.Action, v.Monitor)
		}
	})
}

// TestLockActionHold: a locked account with lock action hold is not
// refused at MAIL FROM (a hold needs end of message), and its message is
// held there, recorded in the store's held list with its queue id.
func TestLockActionHold(t *testing.T) {
	ctx := context.Background()
	lim := ratelimit.NewMemoryOptions(ratelimit.Policy{}, nil, ratelimit.Options{Instance: "mx1"})
	if err := lim.Lock(ctx, "alice", "compromised", "admin", 0); err != nil {
		t.Fatal(err)
	}
	e := scoring.NewEngine(testDirectory(t), lim, scoring.Options{LockAction: scoring.Hold, Records: true, Rules: []scoring.Rule{}})
	env := &scoring.Envelope{AuthLogin: "alice", MailFrom: "alice@example.com", Rcpts: []string{"bob@example.org"}, QueueID: "4XyZ"}
	// a first message makes the store's Recent remember the lock
	id, v := e.CheckSender(env)
	if v.Action != scoring.Accept {
		t.Fatalf("MAIL FROM of a locked account with lock action hold: %s, want go on", v.Reply())
	}
	v = e.CheckMessage(ctx, env, msg("alice@example.com"), id)
	if v.Action != scoring.Hold || v.Rule != ratelimit.RuleAccountLocked || v.Code != 250 || v.RecordError != "" {
		t.Fatalf("end of message: %s (%v, record error %q), want a hold by ACCOUNT_LOCKED", v.Reply(), v.Action, v.RecordError)
	}
	if _, v := e.CheckSender(env); v.Action != scoring.Accept {
		t.Fatalf("MAIL FROM after the lock was seen: %s, want go on", v.Reply())
	}
	held, _ := lim.Held(ctx, "alice")
	if len(held) != 1 || held[0].QueueID != "4XyZ" || held[0].Instance != "mx1" || held[0].Rule != ratelimit.RuleAccountLocked || !held[0].Locked {
		t.Fatalf("held list %+v", held)
	}
}

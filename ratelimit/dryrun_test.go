package ratelimit_test

import (
	"context"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/ratelimit"
)

// TestDryRunChargesNothing: a dry run (a trial) never counts, never
// strikes and never locks, but reports a lock the store holds.
func TestDryRunChargesNothing(t *testing.T) {
	ctx := context.Background()
	m := ratelimit.NewMemory(ratelimit.Policy{
		Limits:  ratelimit.Limits{ratelimit.AccountMessages: {{Limit: 1, Window: time.Hour}}},
		Strikes: ratelimit.StrikePolicy{Threshold: 1, Window: time.Hour},
	}, nil)
	defer m.Close()
	dry := ratelimit.DryRun(m)
	for range 5 {
		d, err := dry.CheckAndCharge(ctx, ratelimit.Request{Account: "alice", Sender: "alice@example.com", Recipients: []string{"bob@example.org"}})
		if err != nil || !d.Allowed {
			t.Fatalf("dry charge: %+v %v", d, err)
		}
		if d, err := dry.CheckAndCharge(ctx, ratelimit.Request{Account: "alice", Outcome: ratelimit.Strike, MessageID: "<x@y>"}); err != nil || d.Locked || d.NewlyLocked {
			t.Fatalf("dry strike: %+v %v", d, err)
		}
	}
	st, err := m.Status(ctx, ratelimit.Account("alice"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range st.Limits {
		if l.Used != 0 {
			t.Errorf("%s used %d after dry runs, want 0", l.Dimension, l.Used)
		}
	}
	if st.Strikes != 0 || st.Lock != nil {
		t.Errorf("strikes %d, lock %+v after dry runs; want none", st.Strikes, st.Lock)
	}
	// The real store still has the hour's one message.
	if d, err := m.CheckAndCharge(ctx, ratelimit.Request{Account: "alice"}); err != nil || !d.Allowed {
		t.Fatalf("real charge after dry runs: %+v %v", d, err)
	}
	if err := m.Lock(ctx, "alice", "test", "admin", 0); err != nil {
		t.Fatal(err)
	}
	if d, err := dry.CheckAndCharge(ctx, ratelimit.Request{Account: "alice"}); err != nil || !d.Locked || d.Lock == nil {
		t.Errorf("dry run of a locked account: %+v %v, want Locked", d, err)
	}
	if err := dry.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Status(ctx, ratelimit.Account("alice")); err != nil {
		t.Errorf("closing the dry run closed the store: %v", err)
	}
}

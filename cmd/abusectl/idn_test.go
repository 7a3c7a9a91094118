package main

import (
	"bytes"
	"context"
	"testing"
)

// TestSubjectsInEitherIDNSpelling: abusectl's address arguments are taken
// in the canonical form (identity), so a sender exempted in its Unicode
// spelling is exempt in its punycode spelling, with any case and a
// trailing dot, and so is an account named by an address.
func TestSubjectsInEitherIDNSpelling(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var out bytes.Buffer
	if err := runExempt(ctx, exemptOptions{Env: f.env, Action: "add", Subject: "sender:mjl@hé.mox.example", Reason: "idn"}, &out); err != nil {
		t.Fatal(err)
	}
	if err := runExempt(ctx, exemptOptions{Env: f.env, Action: "add", Subject: "acct:Zoë@XN--H-BGA.mox.example.", Reason: "idn"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"mjl@xn--h-bga.mox.example", "sender:MJL+news@HÉ.mox.example.", "mjl@hé.mox.example"} {
		if v := statusOf(t, f.env, s); !v.Exempt {
			t.Errorf("status %s: not exempt", s)
		}
	}
	for _, s := range []string{"acct:zoë@hé.mox.example", "acct:ZOË@xn--h-bga.mox.example"} {
		if v := statusOf(t, f.env, s); !v.Exempt {
			t.Errorf("status %s: not exempt", s)
		}
	}
}

package ratelimit_test

import (
	"context"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/ratelimit"
)

// TestSubjectsCanonical: a sender and a recipient count as one subject in
// either IDNA spelling, any case and with a trailing dot, and a sender
// exemption written in one spelling covers the other.
func TestSubjectsCanonical(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	m := ratelimit.NewMemory(ratelimit.Policy{
		Limits: ratelimit.Limits{
			ratelimit.SenderMessages:       {{Limit: 3, Window: time.Hour}},
			ratelimit.AccountNewRecipients: {{Limit: 2, Window: time.Hour}},
		},
		ExemptSenders: map[string]bool{"vip@xn--bcher-kva.example": true},
	}, func() time.Time { return now })
	defer m.Close()
	ctx := context.Background()
	senders := []string{"mjl@hé.mox.example", "mjl@xn--h-bga.mox.example", "MJL+x@HÉ.MOX.EXAMPLE.", "mjl@XN--H-BGA.mox.example."}
	rcpts := []string{"bob@bücher.example", "bob@xn--bcher-kva.example", "carol@example.org"}
	var allowed int
	for i, s := range senders {
		d, err := m.CheckAndCharge(ctx, ratelimit.Request{Account: "mjl", Sender: s, Authenticated: true, Recipients: rcpts[:1+i%2]})
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed {
			allowed++
		} else if d.Exceeded != ratelimit.SenderMessages {
			t.Errorf("message %d refused by %s, want the sender's limit", i, d.Exceeded)
		}
	}
	if allowed != 3 {
		t.Errorf("%d of 4 messages from one sender in four spellings allowed, want 3", allowed)
	}
	// bob in either spelling is one new recipient: carol is the second.
	if d, _ := m.CheckAndCharge(ctx, ratelimit.Request{Account: "mjl", Sender: "other@example.com", Authenticated: true, Recipients: rcpts[2:]}); !d.Allowed {
		t.Errorf("carol refused (%s): bob was counted twice", d.Exceeded)
	}
	for range 5 {
		if d, _ := m.CheckAndCharge(ctx, ratelimit.Request{Account: "vip", Sender: "VIP@bücher.example.", Authenticated: true}); !d.Allowed {
			t.Fatalf("exempt sender refused by %s", d.Exceeded)
		}
	}
}

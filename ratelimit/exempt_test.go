package ratelimit_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/ratelimit"
)

// TestConfiguredExemptionKeepsLocks: an account, sender or client exempted
// in the config is never refused by a limit, but strikes still count and a
// lock still refuses it, in both stores.
func TestConfiguredExemptionKeepsLocks(t *testing.T) {
	ctx := context.Background()
	for _, sm := range bothStores(t) {
		t.Run(sm.name, func(t *testing.T) {
			p := ratelimit.Policy{
				Limits:         ratelimit.Limits{ratelimit.AccountMessages: {rate(1, time.Hour)}},
				ExemptAccounts: map[string]bool{"lists": true},
				ExemptSenders:  map[string]bool{"news@shop.example": true},
				ExemptNetworks: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")},
				Strikes:        ratelimit.StrikePolicy{Threshold: 2, Window: time.Hour},
			}
			s := sm.make(t, p, ratelimit.Options{})
			exempted := []ratelimit.Request{msg("lists", ""), msg("shop", "news@shop.example"), msg("relay", "")}
			exempted[2].Client, exempted[2].Authenticated = netip.MustParseAddr("192.0.2.7"), false
			for _, req := range exempted {
				for i := range 3 {
					d, err := s.CheckAndCharge(ctx, req)
					if err != nil || !d.Allowed || !d.Exempt {
						t.Fatalf("%s message %d: %+v %v, want allowed and exempt", req.Account, i, d, err)
					}
				}
			}
			for _, id := range []string{"<a@x>", "<b@x>"} {
				req := msg("lists", "")
				req.Outcome, req.MessageID = ratelimit.Strike, id
				if _, err := s.CheckAndCharge(ctx, req); err != nil {
					t.Fatal(err)
				}
			}
			d, err := s.CheckAndCharge(ctx, msg("lists", ""))
			if err != nil || d.Allowed || !d.Locked {
				t.Fatalf("exempt account after two strikes: %+v %v, want locked", d, err)
			}
			if err := s.Lock(ctx, "shop", "test", "admin", 0); err != nil {
				t.Fatal(err)
			}
			if d, _ := s.CheckAndCharge(ctx, exempted[1]); d.Allowed || !d.Locked {
				t.Fatalf("locked account with an exempt sender: %+v, want locked", d)
			}
		})
	}
}

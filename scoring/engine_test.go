package scoring_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/identity"
	"github.com/abusemilter/abusemilter/ratelimit"
	"github.com/abusemilter/abusemilter/scoring"
)

func testDirectory(t *testing.T) *identity.Directory {
	t.Helper()
	alice, err := identity.NewAccount("alice", []string{"example.com"})
	if err != nil {
		t.Fatal(err)
	}
	local, _ := identity.NewAccount("local", []string{"any"})
	dir, err := identity.NewDirectory([]*identity.Account{alice, local},
		map[string]string{"alice": "alice"},
		[]identity.NetworkAccount{{Prefix: netip.MustParsePrefix("127.0.0.1/32"), Account: "local"}},
		identity.DirectoryOptions{LoginIsAddress: true})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func msg(from string) *scoring.Message {
	return &scoring.Message{Headers: []scoring.Header{{Name: "From", Value: from}, {Name: "Message-ID", Value: "<1@example.com>"}}}
}

func TestEngineDecisions(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	lim := ratelimit.NewMemory(ratelimit.Policy{Limits: ratelimit.Limits{ratelimit.AccountMessages: {{Limit: 1, Window: time.Hour}}}}, func() time.Time { return now })
	e := scoring.NewEngine(testDirectory(t), lim, scoring.Options{Now: func() time.Time { return now }})

	env := &scoring.Envelope{AuthLogin: "alice", MailFrom: "alice@example.com", Rcpts: []string{"bob@example.org"}}
	id, v := e.CheckSender(env)
	if v.Action != scoring.Accept || id.Name() != "alice" {
		t.Fatalf("CheckSender = %v %q, want accept for alice", v.Action, id.Name())
	}
	if v := e.CheckMessage(context.Background(), env, msg("Alice <alice@example.com>"), id); v.Action != scoring.Accept {
		t.Fatalf("first message: %v %s", v.Action, v.Reply())
	}
	v = e.CheckMessage(context.Background(), env, msg("Alice <alice@example.com>"), id)
	// The first message's bucket (1 of 60 in the hour) leaves the window
	// between 60 and 61 minutes after it was charged.
	var retry int
	if _, err := fmt.Sscanf(v.Text[strings.Index(v.Text, "retry in ")+len("retry in "):], "%ds", &retry); err != nil || v.Action != scoring.Defer || v.Code != 451 || !strings.Contains(v.Text, "ACCOUNT_MSG_RATE 1/1h") || retry < 3600 || retry > 3660 {
		t.Fatalf("second message: %s, want 451 ACCOUNT_MSG_RATE 1/1h with a retry of 3600 to 3660s", v.Reply())
	}
	v = e.CheckMessage(context.Background(), env, msg("PayPal <service@paypal.com>"), id)
	if v.Action != scoring.Reject || v.Reply() != "550 5.7.1 Rejected under the e-mail abuse policy (impersonation: FROM_DOMAIN_NOT_OWNED)" {
		t.Fatalf("forged From: %s", v.Reply())
	}
	if _, v := e.CheckSender(&scoring.Envelope{AuthLogin: "mallory"}); v.Action != scoring.Defer || v.Rule != scoring.RuleUnknownLogin {
		t.Fatalf("unknown login: %s", v.Reply())
	}
	if v := e.CheckRecipient(101); v.Code != 452 || v.EnhancedCode != "4.5.3" {
		t.Fatalf("101st recipient: %s", v.Reply())
	}
}

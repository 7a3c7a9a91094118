package scoring_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/abusemilter/abusemilter/identity"
	"github.com/abusemilter/abusemilter/scoring"
)

// hugeFrom is a From with the account's own address n times, then a
// foreign one: what a sender would write to hide an address past any cap.
func hugeFrom(n int) string {
	var b strings.Builder
	for range n {
		b.WriteString("alice@example.com, ")
	}
	b.WriteString("ceo@bank.example")
	return b.String()
}

// TestAddressCap: rules see at most MaxAddressesChecked addresses of a
// header (bounded work per message), and the identity rule refuses a header
// whose addresses could not all be checked instead of trusting the rest.
func TestAddressCap(t *testing.T) {
	alice, _ := identity.NewAccount("alice", []string{"example.com"})
	dir, _ := identity.NewDirectory([]*identity.Account{alice}, map[string]string{"alice": "alice"}, nil, identity.DirectoryOptions{})
	seen := 0
	probe := scoring.Rule{ID: "PROBE", Clause: scoring.ForgedHeaders, Check: func(c *scoring.Check) (string, bool) {
		from, _ := c.From()
		seen = len(from)
		return "", false
	}}
	env := &scoring.Envelope{AuthLogin: "alice", MailFrom: "alice@example.com", Rcpts: []string{"bob@example.org"}}
	for _, n := range []int{3, scoring.MaxAddressesChecked - 1, 30000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			rules := append(scoring.DefaultRules(), probe)
			e := scoring.NewEngine(dir, nil, scoring.Options{Rules: rules})
			msg := &scoring.Message{Headers: []scoring.Header{{Name: "From", Value: hugeFrom(n)}, {Name: "Sender", Value: "alice@example.com"}}}
			id, _ := e.CheckSender(env)
			v := e.CheckMessage(context.Background(), env, msg, id)
			if seen > scoring.MaxAddressesChecked {
				t.Errorf("rules saw %d addresses, want at most %d", seen, scoring.MaxAddressesChecked)
			}
			if v.Rule != scoring.RuleFromNotOwned {
				t.Fatalf("verdict %s, want %s", v.Reply(), scoring.RuleFromNotOwned)
			}
			capped := strings.Contains(v.Findings[0].Reason, "not all could be checked")
			if capped != (n+1 > scoring.MaxAddressesChecked) {
				t.Errorf("reason %q for %d addresses", v.Findings[0].Reason, n+1)
			}
		})
	}
}

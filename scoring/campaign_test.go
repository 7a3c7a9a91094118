package scoring_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/identity"
	"github.com/abusemilter/abusemilter/internal/testutil/campaigntest"
	"github.com/abusemilter/abusemilter/ratelimit"
	"github.com/abusemilter/abusemilter/scoring"
)

// storeCountedRules fire on the store's campaign counts, which the rule
// table's engine (no store) has not: their cases are the tests below.
var storeCountedRules = map[string]bool{scoring.RuleCampaignMultiAccount: true, scoring.RuleCampaignLinkDomain: true}

// campaignMessage is the campaign as sent to recipient i (see
// campaigntest), from an address of account.
func campaignMessage(t testing.TB, account string, i int) (*scoring.Envelope, *scoring.Message) {
	rcpt := fmt.Sprintf("rcpt%d@dest.example", i)
	raw := fmt.Sprintf("From: %s@example.com\r\nTo: %s\r\nSubject: Spring clearance\r\nDate: %s\r\nMessage-Id: <%d.%s@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: %s\r\n\r\n%s",
		account, rcpt, testNow.Format(time.RFC1123Z), i, account, campaigntest.ContentType,
		campaigntest.Campaign(fmt.Sprintf("Recipient %c", 'A'+i), fmt.Sprintf("tok%07d", i*7919), rcpt))
	env := &scoring.Envelope{AuthLogin: account, MailFrom: account + "@example.com", Rcpts: []string{rcpt}, Time: testNow}
	return env, parse(t, raw)
}

func campaignAccount(t testing.TB, name string) *identity.Account {
	a, err := identity.NewAccount(name, []string{"example.com"})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func campaignEngine(lim ratelimit.Limiter, opts scoring.Options) *scoring.Engine {
	opts.Now = func() time.Time { return testNow }
	opts.Campaigns.Enabled = true
	opts.Campaigns.Body = scoring.CampaignThreshold{Accounts: 5, Window: time.Hour}
	return scoring.NewEngine(nil, lim, opts)
}

// TestCampaignEngine: the same personalised body from six accounts: the
// first four pass, the fifth and sixth are flagged (held with the action
// hold); a forwarder is neither counted nor flagged; different bodies
// from the same accounts are not flagged.
func TestCampaignEngine(t *testing.T) {
	lim := ratelimit.NewMemory(ratelimit.Policy{}, nil)
	e := campaignEngine(lim, scoring.Options{Actions: map[string]scoring.Action{scoring.RuleCampaignMultiAccount: scoring.Hold}})
	ctx := context.Background()
	fwd := campaignAccount(t, "lists")
	fwd.Forwarder = true
	for i := range 6 {
		acct := campaignAccount(t, fmt.Sprintf("acct%d", i))
		// The forwarder resubmits the campaign in between: never counted.
		env, msg := campaignMessage(t, fwd.Name, 100+i)
		if v := e.CheckMessage(ctx, env, msg, scoring.Identity{Account: fwd}); v.Action != scoring.Accept || hasRule(v, scoring.RuleCampaignMultiAccount) {
			t.Fatalf("forwarder, round %d: %v %v", i, v.Action, v.RuleIDs())
		}
		env, msg = campaignMessage(t, acct.Name, i)
		v := e.CheckMessage(ctx, env, msg, scoring.Identity{Account: acct})
		flagged := i >= 4
		if hasRule(v, scoring.RuleCampaignMultiAccount) != flagged || (v.Action == scoring.Hold) != flagged {
			t.Fatalf("account %d: %v %v, want flagged %v", i, v.Action, v.Findings, flagged)
		}
		if flagged {
			f := v.Findings[0]
			if want := fmt.Sprintf("same body from %d accounts within 1h", i+1); f.Rule != scoring.RuleCampaignMultiAccount || f.Reason != want || f.Clause != scoring.SpamVolume {
				t.Fatalf("account %d: finding %+v, want reason %q", i, f, want)
			}
		}
		if v.CampaignError != "" {
			t.Fatalf("campaign error: %s", v.CampaignError)
		}
	}
	for i := range 6 {
		acct := campaignAccount(t, fmt.Sprintf("acct%d", i))
		env, _ := campaignMessage(t, acct.Name, 200+i)
		raw := fmt.Sprintf("From: %s@example.com\r\nTo: x@dest.example\r\nSubject: news\r\nDate: %s\r\nMessage-Id: <d%d@example.com>\r\n\r\n%s", acct.Name, testNow.Format(time.RFC1123Z), i, campaigntest.Distinct(i))
		if v := e.CheckMessage(ctx, env, parse(t, raw), scoring.Identity{Account: acct}); v.Action != scoring.Accept || len(v.Findings) != 0 {
			t.Fatalf("different body from account %d: %v %v", i, v.Action, v.Findings)
		}
	}
	// Evaluate, without the store, never runs the campaign rules.
	env, msg := campaignMessage(t, "acct9", 9)
	if f, _ := e.Evaluate(ctx, env, msg, campaignAccount(t, "acct9")); len(f) != 0 {
		t.Fatalf("Evaluate: %v", f)
	}
}

// TestCampaignLinkDomain: the same link domain from the threshold's number
// of accounts fires CAMPAIGN_LINK_DOMAIN, naming the domain.
func TestCampaignLinkDomain(t *testing.T) {
	e := campaignEngine(ratelimit.NewMemory(ratelimit.Policy{}, nil), scoring.Options{Campaigns: scoring.CampaignOptions{LinkDomain: scoring.CampaignThreshold{Accounts: 3, Window: 10 * time.Minute}}})
	for i := range 3 {
		acct := campaignAccount(t, fmt.Sprintf("acct%d", i))
		raw := fmt.Sprintf("From: %s@example.com\r\nTo: x@dest.example\r\nSubject: news\r\nDate: %s\r\n\r\n%s\r\nhttps://www.spring-deals.example/p/%d\r\n", acct.Name, testNow.Format(time.RFC1123Z), campaigntest.Distinct(i), i)
		v := e.CheckMessage(context.Background(), &scoring.Envelope{MailFrom: acct.Name + "@example.com", Rcpts: []string{"x@dest.example"}, Time: testNow}, parse(t, raw), scoring.Identity{Account: acct})
		if got := hasRule(v, scoring.RuleCampaignLinkDomain); got != (i == 2) || hasRule(v, scoring.RuleCampaignMultiAccount) {
			t.Fatalf("account %d: %v", i, v.Findings)
		}
		if i == 2 && v.Findings[0].Reason != `links to "spring-deals.example" from 3 accounts within 10m` {
			t.Fatalf("reason %q", v.Findings[0].Reason)
		}
	}
}

// failingCounter is a limiter whose campaign counts fail or wait.
type failingCounter struct {
	*ratelimit.Memory
	observe func(ctx context.Context) error
}

func (f failingCounter) ObserveCampaign(ctx context.Context, _ string, fps []ratelimit.Fingerprint) ([]int, error) {
	if err := f.observe(ctx); err != nil {
		return nil, err
	}
	counts := make([]int, len(fps))
	for i := range counts {
		counts[i] = 99
	}
	return counts, nil
}

// TestCampaignStoreFails: a store that cannot count leaves the campaign
// rules out and says so on the verdict; the message is decided as usual.
func TestCampaignStoreFails(t *testing.T) {
	lim := failingCounter{ratelimit.NewMemory(ratelimit.Policy{}, nil), func(context.Context) error { return errors.New("campaign store down") }}
	e := campaignEngine(lim, scoring.Options{Actions: map[string]scoring.Action{scoring.RuleCampaignMultiAccount: scoring.Reject}})
	env, msg := campaignMessage(t, "acct0", 0)
	v := e.CheckMessage(context.Background(), env, msg, scoring.Identity{Account: campaignAccount(t, "acct0")})
	if v.Action != scoring.Accept || len(v.Findings) != 0 || !strings.Contains(v.CampaignError, "campaign store down") {
		t.Fatalf("verdict %v %v, campaign error %q", v.Action, v.Findings, v.CampaignError)
	}
}

// TestCampaignInParallel: the store call runs while the rules do. The
// counter answers only once a rule has run (or fails at its deadline):
// a call made after the rules would never see it.
func TestCampaignInParallel(t *testing.T) {
	ruleRan := make(chan struct{})
	lim := failingCounter{ratelimit.NewMemory(ratelimit.Policy{}, nil), func(ctx context.Context) error {
		select {
		case <-ruleRan:
			return nil
		case <-ctx.Done():
			return errors.New("the rules never ran while the store was asked")
		}
	}}
	rules := []scoring.Rule{{ID: "SIGNAL", Clause: scoring.SpamVolume, Check: func(*scoring.Check) (string, bool) {
		close(ruleRan)
		return "", false
	}}}
	for _, r := range scoring.DefaultRules() {
		if strings.HasPrefix(r.ID, "CAMPAIGN_") {
			rules = append(rules, r)
		}
	}
	e := campaignEngine(lim, scoring.Options{Rules: rules})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	env, msg := campaignMessage(t, "acct0", 0)
	v := e.CheckMessage(ctx, env, msg, scoring.Identity{Account: campaignAccount(t, "acct0")})
	if v.CampaignError != "" || !hasRule(v, scoring.RuleCampaignMultiAccount) || !hasRule(v, scoring.RuleCampaignLinkDomain) {
		t.Fatalf("verdict %v, campaign error %q", v.Findings, v.CampaignError)
	}
}

package scoring

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/abusemilter/abusemilter/identity"
	"github.com/abusemilter/abusemilter/ratelimit"
)

// Rule IDs of campaign detection across accounts.
const (
	RuleCampaignMultiAccount = "CAMPAIGN_MULTI_ACCOUNT"
	RuleCampaignLinkDomain   = "CAMPAIGN_LINK_DOMAIN"
)

// CampaignThreshold fires a campaign rule: a fingerprint sent by Accounts
// distinct accounts or more within Window.
type CampaignThreshold struct {
	Accounts int
	Window   time.Duration
}

// String writes the threshold as reasons and docs do: "5 accounts within 1h".
func (t CampaignThreshold) String() string {
	return fmt.Sprintf("%d accounts within %s", t.Accounts, ratelimit.FormatWindow(t.Window))
}

// Default campaign thresholds.
var (
	DefaultCampaignBody       = CampaignThreshold{Accounts: 5, Window: time.Hour}
	DefaultCampaignLinkDomain = CampaignThreshold{Accounts: 10, Window: time.Hour}
)

// CampaignOptions configure campaign detection across accounts: each
// message's fingerprints (fingerprint.go) are counted in the rate store,
// which must implement ratelimit.CampaignCounter, per distinct account.
type CampaignOptions struct {
	Enabled bool
	// Body fires CAMPAIGN_MULTI_ACCOUNT; zero fields take DefaultCampaignBody's.
	Body CampaignThreshold
	// LinkDomain fires CAMPAIGN_LINK_DOMAIN; zero fields take
	// DefaultCampaignLinkDomain's.
	LinkDomain CampaignThreshold
	// ExemptDomains are link domains (and their subdomains) never counted,
	// beside DefaultCampaignExemptDomains.
	ExemptDomains []string
}

func (o CampaignOptions) withDefaults() CampaignOptions {
	fill := func(t *CampaignThreshold, d CampaignThreshold) {
		if t.Accounts <= 0 {
			t.Accounts = d.Accounts
		}
		if t.Window <= 0 {
			t.Window = d.Window
		}
	}
	fill(&o.Body, DefaultCampaignBody)
	fill(&o.LinkDomain, DefaultCampaignLinkDomain)
	exempt := DefaultCampaignExemptDomains()
	for _, d := range o.ExemptDomains {
		if d = identity.CanonicalDomain(strings.Trim(d, ". ")); d != "" {
			exempt = append(exempt, d)
		}
	}
	o.ExemptDomains = exempt
	return o
}

func campaignRules() []Rule {
	return []Rule{
		{
			ID: RuleCampaignMultiAccount, Clause: SpamVolume, Score: 4,
			Summary: fmt.Sprintf("The same body text (per-recipient greetings, names, numbers, links and tracking tokens left out) was sent by at least `rules.campaigns.body.accounts` distinct accounts within `rules.campaigns.body.window` (default %s), "+
				"counted in the shared store across every milter; the message that reaches the count and those after it fire. Forwarder accounts are neither counted nor flagged. The abuse desk would typically give it an action: `rules.actions: {%s: hold}`.", DefaultCampaignBody, RuleCampaignMultiAccount),
			FalsePositives: "The same announcement or template sent by several customers of one organisation, or a platform that submits its users' notifications through separate accounts: mark such accounts as forwarders, or raise the threshold. Bodies of fewer than eight words are never counted.",
			Check: func(c *Check) (string, bool) {
				cc := c.campaign
				if cc == nil {
					return "", false
				}
				n := 0
				for _, b := range cc.fps.Bands {
					n = max(n, cc.counts[b])
				}
				if t := cc.opts.Body; n >= t.Accounts {
					return fmt.Sprintf("same body from %d accounts within %s", n, ratelimit.FormatWindow(t.Window)), true
				}
				return "", false
			},
		},
		{
			ID: RuleCampaignLinkDomain, Clause: SpamVolume, Score: 3,
			Summary: fmt.Sprintf("A link of the message goes to a domain (or, for URL shorteners, to a URL) that at least `rules.campaigns.link_domain.accounts` distinct accounts linked to within `rules.campaigns.link_domain.window` (default %s). "+
				"Domains every newsletter links to (social networks, big platforms, mailing services) and `rules.campaigns.exempt_domains` are not counted.", DefaultCampaignLinkDomain),
			FalsePositives: "A popular site that many customers link to (a local newspaper, a shared booking service): add it to `rules.campaigns.exempt_domains`. Forwarder accounts are neither counted nor flagged.",
			Check: func(c *Check) (string, bool) {
				cc := c.campaign
				if cc == nil {
					return "", false
				}
				best, bestN := "", 0
				for _, d := range cc.fps.Domains {
					if n := cc.counts[d]; n > bestN {
						best, bestN = fmt.Sprintf("links to %q", strings.TrimPrefix(d, FingerprintDomain)), n
					}
				}
				for _, u := range cc.fps.URLs {
					if n := cc.counts[u]; n > bestN {
						best, bestN = fmt.Sprintf("link %s", cc.fps.URLText[u]), n
					}
				}
				if t := cc.opts.LinkDomain; bestN >= t.Accounts {
					return fmt.Sprintf("%s from %d accounts within %s", best, bestN, ratelimit.FormatWindow(t.Window)), true
				}
				return "", false
			},
		},
	}
}

// isCampaignRule reports whether a rule needs the store's campaign counts:
// the engine runs those once the counts are in.
func isCampaignRule(id string) bool {
	return id == RuleCampaignMultiAccount || id == RuleCampaignLinkDomain
}

// campaignCounts are the store's answer for a message's fingerprints.
type campaignCounts struct {
	fps    Fingerprints
	counts map[string]int // fingerprint -> distinct accounts
	opts   *CampaignOptions
}

// campaignCall is the store call counting a message's fingerprints, made
// while the rules run.
type campaignCall struct {
	done   chan struct{}
	fps    Fingerprints
	list   []ratelimit.Fingerprint
	counts []int
	err    error
}

// startCampaign starts, on a goroutine of its own, computing the message's
// fingerprints and counting them in the store, unless campaigns are off,
// the store cannot count them or the account is a forwarder (it resubmits
// other people's mail); it returns nil then. The goroutine only reads the
// message, as the rules do meanwhile.
func (e *Engine) startCampaign(ctx context.Context, c *Check) *campaignCall {
	counter, ok := ratelimit.As[ratelimit.CampaignCounter](e.limiter)
	if !ok || !e.opts.Campaigns.Enabled || len(e.campaignRules) == 0 || c.Account == nil || c.Account.Forwarder {
		return nil
	}
	call := &campaignCall{done: make(chan struct{})}
	msg, account := c.Msg, c.Account.Name
	go func() {
		defer close(call.done)
		call.fps = messageFingerprints(msg, e.campaignExempt)
		co := &e.opts.Campaigns
		for _, b := range call.fps.Bands {
			call.list = append(call.list, ratelimit.Fingerprint{Key: b, Window: co.Body.Window})
		}
		for _, l := range append(call.fps.Domains, call.fps.URLs...) {
			call.list = append(call.list, ratelimit.Fingerprint{Key: l, Window: co.LinkDomain.Window})
		}
		if len(call.list) > 0 {
			call.counts, call.err = counter.ObserveCampaign(ctx, account, call.list)
		}
	}()
	return call
}

// wait returns the counts, or the store's error (or the context's, when
// the check's deadline passes first).
func (call *campaignCall) wait(ctx context.Context, opts *CampaignOptions) (*campaignCounts, error) {
	select {
	case <-call.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("campaign count: %w", ctx.Err())
	}
	if call.err != nil {
		return nil, call.err
	}
	if len(call.counts) != len(call.list) {
		return nil, fmt.Errorf("campaign count: %d counts for %d fingerprints", len(call.counts), len(call.list))
	}
	cc := &campaignCounts{fps: call.fps, counts: make(map[string]int, len(call.list)), opts: opts}
	for i, fp := range call.list {
		cc.counts[fp.Key] = call.counts[i]
	}
	return cc, nil
}

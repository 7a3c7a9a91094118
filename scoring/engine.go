package scoring

import (
	"context"
	"sort"
	"time"

	"github.com/abusemilter/abusemilter/identity"
	"github.com/abusemilter/abusemilter/ratelimit"
)

// Mode says whether verdicts are enforced or only reported.
type Mode string

// The two modes of operation.
const (
	Enforce Mode = "enforce"
	Monitor Mode = "monitor"
)

// Options configures an Engine. The zero value of a field means its default.
type Options struct {
	Mode            Mode
	RejectThreshold float64 // default 10
	MaxRecipients   int     // per message; default 100; negative: no cap
	// UnknownLogin and UnknownClient decide submissions that match no
	// account; default Defer. Accept lets them through as an account that
	// may send as anyone (named after the login or client address).
	UnknownLogin  Action
	UnknownClient Action
	// LimiterFailure is the fail mode when the rate store cannot answer in
	// time: Accept (default) or Defer.
	LimiterFailure Action
	// LockAction is what a locked account's mail gets: Defer (default),
	// Reject or Hold (held for review at end of message: a locked account
	// is then not refused early at MAIL FROM).
	LockAction Action
	// HoldThreshold, when positive, holds a message whose findings add up
	// to it (and stay below RejectThreshold).
	HoldThreshold float64
	// Actions gives rules (by ID) and clauses (by name) an action of their
	// own: when such a finding fires, its action applies whatever the
	// score (Reject or Hold; Accept makes even a decisive rule count only
	// by its score). A rule's entry wins over its clause's. The most
	// severe action of all findings and thresholds decides.
	Actions map[string]Action
	// Records turns on the abuse desk's records when the limiter is also a
	// ratelimit.Recorder: the Message-ID record of every accepted message
	// (in the one check-and-charge call) and the decision record of every
	// message held or refused at end of message (one more call).
	Records bool
	// LockContact is named in the reply to a locked account, e.g. "abuse@example.net".
	LockContact string
	Disabled    map[string]bool    // rule IDs switched off
	Scores      map[string]float64 // rule ID -> score override
	Settings    RuleSettings
	Resolver    Resolver
	Now         func() time.Time
	// Rules replaces the built-in rule set (tests); nil means DefaultRules().
	Rules []Rule
	// OnRulePanic, when set, is told of every rule that panicked, with the
	// rule's ID and the panic value. The message is decided as if the rule
	// had not fired. It is called on the message's goroutine and must not
	// block.
	OnRulePanic func(rule string, value any)
	// Malware sets what antivirus verdicts do (malware.go).
	Malware MalwareOptions
	// Campaigns sets campaign detection across accounts (campaign.go).
	Campaigns CampaignOptions
}

// DefaultDNSBudget bounds the DNS time the rules spend on one message when
// the settings give no budget.
const DefaultDNSBudget = 100 * time.Millisecond

// Engine decides about submissions. It is immutable and safe for concurrent
// use; a config reload builds a new Engine.
type Engine struct {
	opts    Options
	dir     *identity.Directory
	limiter ratelimit.Limiter
	rules   []Rule
	lex     *lexicon
	// campaignRules run once the store counted the message's fingerprints.
	campaignRules  []Rule
	campaignExempt domainSet // link domains the fingerprints leave out
}

// NewEngine builds an engine over an account directory and a limiter. A nil
// limiter means no rate limits (the offline scanner without replay).
func NewEngine(dir *identity.Directory, limiter ratelimit.Limiter, opts Options) *Engine {
	if opts.Mode == "" {
		opts.Mode = Enforce
	}
	if opts.RejectThreshold == 0 {
		opts.RejectThreshold = 10
	}
	if opts.MaxRecipients == 0 {
		opts.MaxRecipients = 100
	}
	if opts.UnknownLogin == 0 {
		opts.UnknownLogin = Defer
	}
	if opts.UnknownClient == 0 {
		opts.UnknownClient = Defer
	}
	if opts.LimiterFailure == 0 {
		opts.LimiterFailure = Accept
	}
	if opts.LockAction == 0 {
		opts.LockAction = Defer
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Settings.DNSBudget == 0 {
		opts.Settings.DNSBudget = DefaultDNSBudget
	}
	rules := opts.Rules
	if rules == nil {
		rules = DefaultRules()
	}
	opts.Campaigns = opts.Campaigns.withDefaults()
	var active, campaign []Rule
	for _, r := range rules {
		if opts.Disabled[r.ID] {
			continue
		}
		if s, ok := opts.Scores[r.ID]; ok {
			r.Score = s
		}
		if isCampaignRule(r.ID) {
			campaign = append(campaign, r)
			continue
		}
		active = append(active, r)
	}
	return &Engine{opts: opts, dir: dir, limiter: limiter, rules: active, lex: newLexicon(&opts.Settings),
		campaignRules: campaign, campaignExempt: newDomainSet(opts.Campaigns.ExemptDomains)}
}

// Mode returns the engine's mode.
func (e *Engine) Mode() Mode { return e.opts.Mode }

// Identity is the account a submission was matched to.
type Identity struct {
	Account *identity.Account // nil when unknown and refused
	How     identity.How
}

// Name returns the account name for logs and counters.
func (id Identity) Name() string {
	if id.Account == nil {
		return ""
	}
	return id.Account.Name
}

// CheckSender runs at MAIL FROM: it resolves the account and refuses early
// what is already known to be refused (unknown account by policy, an account
// this milter saw locked or over a limit), before the client sends the body.
// A zero-Action (Accept) verdict means "go on".
func (e *Engine) CheckSender(env *Envelope) (Identity, Verdict) {
	id := e.Identify(env)
	if id.Account == nil {
		rule, act := RuleUnknownClient, e.opts.UnknownClient
		if id.How == identity.UnknownLogin {
			rule, act = RuleUnknownLogin, e.opts.UnknownLogin
		}
		return id, e.finish(e.refusal(act, Policy, rule, "", 0))
	}
	if e.limiter != nil {
		// A lock whose action is hold is decided at end of message: only
		// there can the MTA put the message on hold.
		if d, ok := e.limiter.Recent(id.Account.Name); ok && !(d.Locked && e.opts.LockAction == Hold) {
			return id, e.finish(e.limitVerdict(d, nil))
		}
	}
	return id, e.finish(AcceptVerdict(nil, 0))
}

// Identify resolves the account of a submission; unknown logins or clients
// whose configured action is Accept get an ad-hoc account that may send as
// anyone.
func (e *Engine) Identify(env *Envelope) Identity {
	a, how := e.dir.Resolve(env.AuthLogin, env.ClientAddr)
	if a != nil {
		return Identity{Account: a, How: how}
	}
	act := e.opts.UnknownClient
	name := "client:" + env.ClientAddr.String()
	if how == identity.UnknownLogin {
		act, name = e.opts.UnknownLogin, "login:"+identity.CanonicalLogin(env.AuthLogin)
	}
	if act == Accept {
		return Identity{Account: &identity.Account{Name: name, AnySender: true, AdHoc: true}, How: how}
	}
	return Identity{How: how}
}

// CheckRecipient runs at each RCPT TO; n is the number of this recipient in
// the message (1 for the first). Past the per-message cap the recipient gets
// 452 4.5.3 and the client sends it in a later transaction.
func (e *Engine) CheckRecipient(n int) Verdict {
	if e.opts.MaxRecipients > 0 && n > e.opts.MaxRecipients {
		return e.finish(TooManyRecipientsVerdict(e.opts.MaxRecipients))
	}
	return e.finish(AcceptVerdict(nil, 0))
}

// CheckMessage runs at end of message: the rules, then (for a message they
// accept) the one check-and-charge call to the rate store, or (for one they
// reject) the strike. id is the identity from CheckSender. With campaigns
// on, the store counts the message's fingerprints while the rules run (one
// more call, in parallel), and the campaign rules run on its answer; a
// store that fails there only leaves them out (Verdict.CampaignError).
func (e *Engine) CheckMessage(ctx context.Context, env *Envelope, msg *Message, id Identity) Verdict {
	if id.Account == nil {
		id = e.Identify(env)
		if id.Account == nil {
			_, v := e.CheckSender(env)
			return v
		}
	}
	c, cancel := e.newCheck(ctx, env, msg, id.Account)
	defer cancel()
	call := e.startCampaign(ctx, c)
	findings, score := e.evaluate(c, e.rules, nil, 0)
	var campaignErr error
	if call != nil {
		if c.campaign, campaignErr = call.wait(ctx, &e.opts.Campaigns); campaignErr == nil {
			findings, score = e.evaluate(c, e.campaignRules, findings, score)
		}
	}
	var rec *ratelimit.MessageRecord
	if e.opts.Records {
		if _, ok := ratelimit.As[ratelimit.Recorder](e.limiter); ok {
			rec = newRecord(env, msg, id)
		}
	}
	v := e.settle(ctx, env, msg.Get("Message-Id"), id, findings, score, rec)
	if campaignErr != nil {
		v.CampaignError = campaignErr.Error()
	}
	return v
}

// Settle is the second half of CheckMessage, for findings and a score the
// rules already produced (Evaluate): it judges them and, with a limiter,
// makes the one check-and-charge call (a strike for a reject). id must
// name an account. The offline scanner's rate replay calls it with the
// findings of its first pass, in the messages' Date order.
func (e *Engine) Settle(ctx context.Context, env *Envelope, messageID string, id Identity, findings []Finding, score float64) Verdict {
	return e.settle(ctx, env, messageID, id, findings, score, nil)
}

// settle is Settle with the desk's record of the message (nil: none): its
// Message-ID record rides in the check-and-charge call, and a message held
// or refused gets its decision record in one more call.
func (e *Engine) settle(ctx context.Context, env *Envelope, messageID string, id Identity, findings []Finding, score float64, rec *ratelimit.MessageRecord) Verdict {
	v := e.judge(findings, score)
	if e.limiter == nil || id.Account == nil {
		return e.finish(v)
	}
	req := ratelimit.Request{
		Account: id.Account.Name, Sender: env.MailFrom, Client: env.ClientAddr,
		Authenticated: env.Authenticated(), Recipients: env.Rcpts,
		MessageID: messageID, Monitor: e.opts.Mode == Monitor, Record: rec,
	}
	if v.Action == Reject {
		req.Outcome = ratelimit.Strike
	}
	d, err := e.limiter.CheckAndCharge(ctx, req)
	switch {
	case err != nil && (v.Action == Reject || v.Action == Hold):
		// content decided; the strike is lost, the verdict is not
	case err != nil:
		lv := e.refusal(e.opts.LimiterFailure, Policy, RuleLimiterUnavailable, "", 0)
		lv.Findings, lv.Score = findings, score
		lv.LimiterError = err.Error()
		v = lv
	case v.Action != Reject && !d.Allowed:
		v = e.limitVerdict(d, findings)
	}
	v = e.finish(v)
	// (Not when the store just failed: the record would fail too, and add
	// its wait to the fail mode's.)
	if rec != nil && err == nil && v.Action != Accept {
		// A record that cannot be written leaves the verdict as it is: a
		// held message is held by the MTA all the same.
		if err := e.recordDecision(ctx, rec, v, d); err != nil {
			v.RecordError = err.Error()
		}
	}
	return v
}

// Evaluate runs the rules only and returns their findings (sorted by score,
// highest first) and the total score. The campaign rules, which need the
// store, are left out.
func (e *Engine) Evaluate(ctx context.Context, env *Envelope, msg *Message, acct *identity.Account) ([]Finding, float64) {
	c, cancel := e.newCheck(ctx, env, msg, acct)
	defer cancel()
	return e.evaluate(c, e.rules, nil, 0)
}

// newCheck prepares what the rules see of a message; cancel ends its DNS
// budget.
func (e *Engine) newCheck(ctx context.Context, env *Envelope, msg *Message, acct *identity.Account) (c *Check, cancel context.CancelFunc) {
	now := env.Time
	if now.IsZero() {
		now = e.opts.Now()
	}
	c = &Check{Ctx: ctx, Env: env, Msg: msg, Account: acct, Now: now, Resolver: e.opts.Resolver, Settings: &e.opts.Settings, lex: e.lex}
	cancel = func() {}
	if e.opts.Settings.DNSBudget > 0 {
		c.Ctx, cancel = context.WithTimeout(ctx, e.opts.Settings.DNSBudget)
	}
	return c, cancel
}

// evaluate runs rules on c, adding their findings to those given, and
// returns them all sorted (decisive first, then by score, highest first)
// with the total.
func (e *Engine) evaluate(c *Check, rules []Rule, findings []Finding, total float64) ([]Finding, float64) {
	for _, r := range rules {
		reason, fired := e.runRule(r, c)
		if !fired {
			continue
		}
		findings = append(findings, Finding{Rule: r.ID, Clause: r.Clause, Score: r.Score, Decisive: r.Decisive, Reason: reason})
		total += r.Score
	}
	sort.SliceStable(findings, func(i, j int) bool {
		if findings[i].Decisive != findings[j].Decisive {
			return findings[i].Decisive
		}
		return findings[i].Score > findings[j].Score
	})
	return findings, total
}

// runRule runs one rule and turns a panic into "did not fire", so that one
// broken rule cannot take the milter down with it; OnRulePanic hears of it.
func (e *Engine) runRule(r Rule, c *Check) (reason string, fired bool) {
	defer func() {
		if p := recover(); p != nil {
			reason, fired = "", false
			if e.opts.OnRulePanic != nil {
				e.opts.OnRulePanic(r.ID, p)
			}
		}
	}()
	return r.Check(c)
}

// judge turns findings into a verdict: a finding whose rule or clause has
// an action of its own (Options.Actions) applies it, a decisive finding
// otherwise rejects, a total at or above the reject threshold rejects and
// one at or above the hold threshold holds. The most severe wins, naming
// the first finding that asks for it (the first of all for a threshold).
// Content never defers.
func (e *Engine) judge(findings []Finding, score float64) Verdict {
	if v, ok := e.malwareVerdict(findings, score); ok {
		return v
	}
	act, by := Accept, -1
	for i, f := range findings {
		a, set := e.actionOf(f)
		if !set {
			if !f.Decisive {
				continue
			}
			a = Reject
		}
		if a.severity() > act.severity() {
			act, by = a, i
		}
	}
	if len(findings) > 0 {
		switch {
		case score >= e.opts.RejectThreshold && act != Reject:
			act, by = Reject, 0
		case e.opts.HoldThreshold > 0 && score >= e.opts.HoldThreshold && act == Accept:
			act, by = Hold, 0
		}
	}
	switch act {
	case Reject:
		f := findings[by]
		return RejectVerdict(f.Clause, f.Rule, "", findings, score)
	case Hold:
		f := findings[by]
		return HoldVerdict(f.Clause, f.Rule, "", findings, score)
	}
	return AcceptVerdict(findings, score)
}

// actionOf returns the action configured for a finding's rule, else for
// its clause.
func (e *Engine) actionOf(f Finding) (Action, bool) {
	if a, ok := e.opts.Actions[f.Rule]; ok {
		return a, true
	}
	a, ok := e.opts.Actions[string(f.Clause)]
	return a, ok
}

// limitVerdict turns a limiter refusal into a verdict.
func (e *Engine) limitVerdict(d ratelimit.Decision, findings []Finding) Verdict {
	if d.Locked {
		detail := ""
		if e.opts.LockContact != "" {
			detail = "account locked, contact " + e.opts.LockContact
		} else {
			detail = "account locked"
		}
		v := e.refusal(e.opts.LockAction, Policy, ratelimit.RuleAccountLocked, detail, 0)
		v.Findings = findings
		return v
	}
	v := DeferVerdict(SpamVolume, d.Exceeded.RuleID(), d.Rate.String(), d.RetryAfter, findings)
	return v
}

// refusal builds a verdict for a policy decision with a configured action.
func (e *Engine) refusal(act Action, clause Clause, rule, detail string, retry time.Duration) Verdict {
	switch act {
	case Reject:
		return RejectVerdict(clause, rule, detail, nil, 0)
	case Defer:
		return DeferVerdict(clause, rule, detail, retry, nil)
	case Hold:
		return HoldVerdict(clause, rule, detail, nil, 0)
	}
	v := AcceptVerdict(nil, 0)
	v.Rule, v.Clause = rule, clause
	return v
}

// finish stamps the mode on a verdict.
func (e *Engine) finish(v Verdict) Verdict {
	v.Monitor = e.opts.Mode == Monitor && v.Action != Accept
	return v
}

// DefaultRules returns the built-in rule set in evaluation order.
func DefaultRules() []Rule {
	var rules []Rule
	rules = append(rules, impersonationRules()...)
	rules = append(rules, forgedHeaderRules()...)
	rules = append(rules, bulkRules()...)
	rules = append(rules, campaignRules()...)
	rules = append(rules, phishingRules()...)
	rules = append(rules, classifierRules()...)
	return append(rules, malwareRules()...)
}

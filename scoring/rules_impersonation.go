package scoring

import (
	"fmt"
	"strings"

	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"
)

// Rule IDs of the impersonation clause (FROM_DOMAIN_NOT_OWNED is RuleFromNotOwned).
const (
	RuleDisplayNameAddress = "DISPLAY_NAME_ADDRESS"
	RuleLookalikeBrand     = "LOOKALIKE_BRAND"
	RuleLookalikeCustomer  = "LOOKALIKE_CUSTOMER"
	RuleBrandInDomain      = "BRAND_IN_DOMAIN"
	RuleBrandDisplayName   = "BRAND_DISPLAY_NAME"
	RuleBrandConfusable    = "BRAND_CONFUSABLE_NAME"
	RuleReplyToDiverts     = "REPLY_TO_DIVERTS_BRAND"
	RuleDMARCForeign       = "DMARC_FOREIGN_DOMAIN"
)

func impersonationRules() []Rule {
	return []Rule{
		fromDomainNotOwned(),
		{
			ID: RuleDisplayNameAddress, Clause: Impersonation, Score: 5,
			Summary:        "The From display name contains an e-mail address or domain other than the real From address (\"support@paypal.com\" <x@example.com>), also when hidden in encoded words.",
			FalsePositives: "Display names that mention another of the sender's domains or a product with a TLD-like name (\"ASP.NET Team\"); a name equal to the sender's own address does not fire.",
			Check: func(c *Check) (string, bool) {
				a, d, ok := c.Author()
				if !ok || a.Name == "" {
					return "", false
				}
				if other := foreignNameInDisplay(a.Name, d); other != "" {
					return fmt.Sprintf("display name %q names %q, the address is in %q", truncate(a.Name, 60), other, d), true
				}
				return "", false
			},
		},
		{
			ID: RuleLookalikeBrand, Clause: Impersonation, Score: 10, Decisive: true,
			Summary:        "A sender domain (envelope, From, Sender, Reply-To, Resent-From) imitates a protected brand's domain: confusable spelling (Unicode TR39 skeleton, punycode, digit swaps like paypa1), one typing slip away on a name of six or more letters (a letter left out, doubled or added, two neighbours swapped, or on names of seven or more one letter other than the first changed; a plural s does not count), or the brand domain embedded (paypal.com-login.net). Decisive even when the account owns the lookalike.",
			FalsePositives: "A customer whose real name is one slip from a protected brand: list protected_brands explicitly without that brand (the list replaces the built-in one), or lower this rule's score.",
			Check: func(c *Check) (string, bool) {
				if c.lex == nil {
					return "", false
				}
				for _, sd := range c.senderDomains() {
					if c.lex.ownBrandDomain(sd.domain) {
						continue // a brand's related domain is its own
					}
					if ref, how, ok := c.domain(sd.domain).lookalikeOf(c.lex.brandLex); ok {
						return fmt.Sprintf("%s domain %q imitates %q (%s)", sd.where, sd.domain, ref.domain, how), true
					}
				}
				return "", false
			},
		},
		{
			ID: RuleLookalikeCustomer, Clause: Impersonation, Score: 4,
			Summary:        "A sender domain the account does not own imitates another customer's domain (confusable spelling or one typing slip away). Scored only: two customers may really own similar names.",
			FalsePositives: "Similar names owned by unrelated customers (smith-law.com, smithlaw.com).",
			Check: func(c *Check) (string, bool) {
				if c.lex == nil || len(c.lex.customers) == 0 {
					return "", false
				}
				for _, sd := range c.senderDomains() {
					if c.OwnsDomain(sd.domain) {
						continue
					}
					if ref, how, ok := c.domain(sd.domain).lookalikeIn(c.lex.customerIndex); ok && !c.OwnsDomain(ref.domain) {
						return fmt.Sprintf("%s domain %q imitates customer domain %q (%s)", sd.where, sd.domain, ref.domain, how), true
					}
				}
				return "", false
			},
		},
		{
			ID: RuleBrandInDomain, Clause: Impersonation, Score: 4,
			Summary:        "A sender domain that is not the brand's carries a protected brand name as a hyphen-separated part of its name (paypal-secure.com, apple-id-support.net).",
			FalsePositives: "Businesses named after a common word that is also a brand (apple-orchard.com); scored.",
			Check: func(c *Check) (string, bool) {
				if c.lex == nil {
					return "", false
				}
				for _, sd := range c.senderDomains() {
					p := c.domain(sd.domain)
					reg, label := p.reg, p.label
					if !strings.Contains(label, "-") || c.lex.ownBrandDomain(sd.domain) {
						continue
					}
					for _, ref := range c.lex.brandLex {
						if len(ref.label) < 4 || reg == ref.domain {
							continue
						}
						for _, part := range strings.Split(label, "-") {
							if part == ref.label {
								return fmt.Sprintf("%s domain %q carries brand name %q", sd.where, sd.domain, ref.label), true
							}
						}
					}
				}
				return "", false
			},
		},
		{
			ID: RuleBrandDisplayName, Clause: Impersonation, Score: 5,
			Summary:        "The From display name names a protected brand (\"PayPal Service\") while the From domain is not that brand's, or From holds the brand name and no address at all.",
			FalsePositives: "People or shops whose name contains a brand word (\"Apple Orchard Farm\"); scored, so that such a name alone never rejects.",
			Check: func(c *Check) (string, bool) {
				if c.lex == nil {
					return "", false
				}
				name, d := "", ""
				if a, dom, ok := c.Author(); ok {
					name, d = a.Name, dom
				} else if c.Count("From") > 0 {
					name = DecodeHeader(unfold(c.Msg.Get("From"))) // no address: the whole value is a name
				}
				if name == "" {
					return "", false
				}
				b, named := c.lex.brandNamed(name)
				if !named || (d != "" && brandFamily(d, b)) {
					return "", false
				}
				if d == "" {
					return fmt.Sprintf("From %q names %s and has no address", truncate(name, 60), b.Domain), true
				}
				return fmt.Sprintf("display name %q names %s, From domain is %q", truncate(name, 60), b.Domain, d), true
			},
		},
		{
			ID: RuleBrandConfusable, Clause: Impersonation, Score: 6,
			Summary:        "The From display name, the Subject or the first lines of the body write a protected brand's name with look-alike characters: compared after Unicode TR39 skeleton mapping (Cyrillic, Greek, Armenian, Cherokee look-alikes, fullwidth and mathematical letters, small capitals), digit and symbol swaps (Micr0soft, P@yPal), invisible characters (zero-width space and joiners, soft hyphen, bidi controls) and spaced-out letters (\"P a y P a l\", \"P.a.y.P.a.l\") removed. Names match whole words only; names of fewer than five letters (DHL, UPS, HSBC) only as one word with a character other than a Latin letter. The plain spelling in any case is left to BRAND_DISPLAY_NAME, and mail from the brand's own domains does not count.",
			FalsePositives: "Text that spells a brand with a digit or symbol on purpose (\"Micro$oft\" in a discussion); a customer whose own name merely contains a brand's letters (\"Kapaypalooza Ltd\") does not fire it.",
			Check: func(c *Check) (string, bool) {
				if c.lex == nil {
					return "", false
				}
				_, d, _ := c.Author()
				own := func(b Brand) bool { return d != "" && brandFamily(d, b) }
				if a, _, ok := c.Author(); ok && a.Name != "" {
					if m, ok := c.lex.confusableBrand(a.Name, own); ok {
						return fmt.Sprintf("display name %+q writes %q with look-alike characters", m.seen, m.written), true
					}
				}
				if m, ok := c.lex.confusableBrand(DecodeHeader(unfold(c.Msg.Get("Subject"))), own); ok {
					return fmt.Sprintf("Subject %+q writes %q with look-alike characters", m.seen, m.written), true
				}
				if m, ok := c.lex.confusableBrand(c.leadText(), own); ok {
					return fmt.Sprintf("body text %+q writes %q with look-alike characters", m.seen, m.written), true
				}
				return "", false
			},
		},
		{
			ID: RuleReplyToDiverts, Clause: Impersonation, Score: 6,
			Summary:        "Replies are diverted: Reply-To is in a different registrable domain (often freemail) while the From display name or domain claims a protected brand. Reply-To alone is normal.",
			FalsePositives: "A brand's own mail with Reply-To at a support-desk domain.",
			Check: func(c *Check) (string, bool) {
				a, d, ok := c.Author()
				if !ok || c.lex == nil {
					return "", false
				}
				rt, _ := c.Addresses("Reply-To")
				if len(rt) == 0 {
					return "", false
				}
				claim := ""
				if b, named := c.lex.brandNamed(a.Name); named {
					claim = b.Domain
				}
				// A person's freemail address is no brand claim; a brand's own
				// domain is.
				for _, b := range c.lex.brands {
					if isBrandDomain(d, b) && !freemailDomains[registrable(d)] {
						claim = b.Domain
					}
				}
				if claim == "" {
					if ref, _, ok := c.domain(d).lookalikeOf(c.lex.brandLex); ok {
						claim = ref.domain
					}
				}
				if claim == "" {
					return "", false
				}
				for _, r := range rt {
					rd := domainOf(r.Address)
					if rd == "" || registrable(rd) == registrable(d) {
						continue
					}
					kind := "another domain"
					if freemailDomains[registrable(rd)] {
						kind = "freemail"
					}
					return fmt.Sprintf("Reply-To %q (%s) on mail claiming %s", rd, kind, claim), true
				}
				return "", false
			},
		},
		{
			ID: RuleDMARCForeign, Clause: Impersonation, Score: 10,
			Summary:        "The From domain is not one the account owns and publishes DMARC p=reject or p=quarantine (sp= for subdomains, with the organisational-domain fallback): receivers would refuse it as spoofed. Skipped when DNS fails or runs out of time.",
			FalsePositives: "Forwarder accounts pass when the message keeps a DKIM signature aligned with the From domain (it will still pass DMARC).",
			Check: func(c *Check) (string, bool) {
				_, d, ok := c.Author()
				if !ok || c.Resolver == nil || c.OwnsDomain(d) {
					return "", false
				}
				from, _ := c.From()
				if c.Owns(from[0].Address) {
					return "", false
				}
				if c.forwarder() && hasAlignedDKIM(c, d) {
					return "", false
				}
				p, where := dmarcPolicy(c, d)
				if p == dmarc.PolicyReject || p == dmarc.PolicyQuarantine {
					return fmt.Sprintf("From domain %q is not the account's and %s publishes p=%s", d, where, p), true
				}
				return "", false
			},
		},
	}
}

// senderDomain is a domain in a sender position, for lookalike checks.
type senderDomain struct{ where, domain string }

// senderDomains lists the distinct domains of the envelope sender, From,
// Sender, Reply-To and Resent-From.
func (c *Check) senderDomains() []senderDomain {
	if c.sendersSet {
		return c.senders
	}
	c.sendersSet = true
	var out []senderDomain
	seen := map[string]bool{}
	add := func(where, addr string) {
		d := domainOf(addr)
		if d != "" && !seen[d] {
			seen[d] = true
			out = append(out, senderDomain{where, d})
		}
	}
	from, _ := c.From()
	for _, a := range from {
		add("From", a.Address)
	}
	add("envelope sender", c.Env.MailFrom)
	for _, name := range []string{"Sender", "Reply-To", "Resent-From"} {
		addrs, _ := c.Addresses(name)
		for _, a := range addrs {
			add(name, a.Address)
		}
	}
	c.senders = out
	return out
}

// brandFamily reports whether d is the brand's domain, a subdomain, or the
// brand's name under another suffix (paypal.de for paypal.com).
func brandFamily(d string, b Brand) bool {
	if isBrandDomain(d, b) {
		return true
	}
	label, _ := domainLabel(registrable(d))
	bl, _ := domainLabel(registrable(b.Domain))
	return label == bl
}

// foreignNameInDisplay returns an address or domain written in a display
// name that is not in the From address's registrable domain, or "".
func foreignNameInDisplay(name, fromDomain string) string {
	own := registrable(fromDomain)
	for _, tok := range strings.FieldsFunc(strings.ToLower(name), func(r rune) bool {
		return r == ' ' || r == '\t' || r == '"' || r == '\'' || r == '(' || r == ')' || r == '<' || r == '>' || r == ',' || r == ';' || r == '[' || r == ']'
	}) {
		tok = strings.Trim(tok, ".:!?")
		host := tok
		if at := strings.LastIndexByte(tok, '@'); at >= 0 {
			host = tok[at+1:]
		}
		if !strings.Contains(host, ".") || strings.HasPrefix(host, ".") {
			continue
		}
		suffix, icann := publicsuffix.PublicSuffix(host)
		if !icann || suffix == host || strings.ContainsAny(host, "/") {
			continue
		}
		// "R.Hughes" is an initial and a name, not a domain under .hughes.
		if label := strings.TrimSuffix(host, "."+suffix); len(label) < 2 || strings.HasSuffix(label, ".") {
			continue
		}
		if registrable(host) != own {
			return tok
		}
	}
	return ""
}

// hasAlignedDKIM reports whether a DKIM-Signature's d= shares the From
// domain's registrable domain and was not found to fail verification.
func hasAlignedDKIM(c *Check, fromDomain string) bool {
	org := registrable(fromDomain)
	for _, v := range c.Msg.Values("DKIM-Signature") {
		d := dkimTag(v, "d")
		if d == "" || registrable(d) != org {
			continue
		}
		if c.Msg.DKIM == nil {
			return true
		}
		for _, r := range c.Msg.DKIM {
			if strings.EqualFold(r.Domain, d) && r.Verified {
				return true
			}
		}
	}
	return false
}

// dmarcPolicy looks up the DMARC policy that applies to mail from domain d
// (RFC 7489 section 6.6.3): _dmarc.<d>, else _dmarc.<organisational
// domain> with its sp= (or p=). It returns "" when there is none or DNS
// failed.
func dmarcPolicy(c *Check, d string) (dmarc.Policy, string) {
	if rec := dmarcRecord(c, d); rec != nil {
		return rec.Policy, "_dmarc." + d
	}
	org := registrable(d)
	if org == d {
		return "", ""
	}
	rec := dmarcRecord(c, org)
	if rec == nil {
		return "", ""
	}
	if rec.SubdomainPolicy != "" {
		return rec.SubdomainPolicy, "_dmarc." + org + " (sp)"
	}
	return rec.Policy, "_dmarc." + org
}

func dmarcRecord(c *Check, d string) *dmarc.Record {
	txts, err := c.Resolver.LookupTXT(c.Ctx, "_dmarc."+d)
	if err != nil {
		return nil
	}
	for _, t := range txts {
		if !strings.HasPrefix(strings.TrimSpace(t), "v=DMARC1") {
			continue
		}
		if rec, err := dmarc.Parse(t); err == nil {
			return rec
		}
	}
	return nil
}

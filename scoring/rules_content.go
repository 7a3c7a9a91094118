package scoring

import (
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/publicsuffix"
)

// Phishing is the clause against phishing, pharming and fraudulent
// schemes: deceptive links, credential forms, requests for credentials.
const Phishing Clause = "phishing"

// Rule IDs of the phishing clause.
const (
	RuleLinkTextMismatch  = "CONTENT_LINK_TEXT_MISMATCH"
	RuleLinkLookalike     = "CONTENT_LINK_LOOKALIKE"
	RulePasswordForm      = "CONTENT_PASSWORD_FORM"
	RuleDangerousLink     = "CONTENT_DANGEROUS_LINK"
	RuleCredentialRequest = "CONTENT_CREDENTIAL_REQUEST"
)

func phishingRules() []Rule {
	sign := func(get func(*phishSigns) string) func(c *Check) (string, bool) {
		return func(c *Check) (string, bool) {
			r := get(c.phishing())
			return r, r != ""
		}
	}
	return []Rule{
		{
			ID: RuleLinkTextMismatch, Clause: Phishing, Score: 4,
			Summary:        "An HTML link whose visible text is a web address or domain (\"www.paypal.com\") leads to a different registrable domain. The same name under another suffix (example.de for example.com) and the click-tracking redirectors of the big e-mail service providers (list-manage.com, sendgrid.net, ...) do not count.",
			FalsePositives: "Newsletters sent through a click-tracking service not on the list, and mail that shows a partner's address but links through the sender's own site.",
			Check:          sign(func(p *phishSigns) string { return p.mismatch }),
		},
		{
			ID: RuleLinkLookalike, Clause: Phishing, Score: 5,
			Summary:        "A link in the body sample leads to a lookalike of a protected brand's domain or of a customer domain (the same tests as LOOKALIKE_BRAND: confusable spelling, one typing slip, the domain embedded). Links to the brand's own domains, to a customer's real domain and to the account's own domains do not count.",
			FalsePositives: "Links to a business whose real name is one slip from a protected brand or a customer.",
			Check:          sign(func(p *phishSigns) string { return p.lookalike }),
		},
		{
			ID: RulePasswordForm, Clause: Phishing, Score: 6,
			Summary:        "An HTML body part or attached HTML file (in the body sample) has a password field (<input type=password>): a page that collects a password where it is read, which no legitimate sender mails. An attached file with such a form also fires ATTACH_HTML_FORM (malware clause): together they reach the reject threshold.",
			FalsePositives: "Hardly any: web designers mailing a login-page template; the word \"password\" in text and forms without a password field do not count.",
			Check:          sign(func(p *phishSigns) string { return p.password }),
		},
		{
			ID: RuleDangerousLink, Clause: Phishing, Score: 3,
			Summary:        "An HTML link, source or form action uses the javascript:, vbscript: or data: scheme (a data:text/html page, a script run on click). Inline images (data:image/... on <img>) and the do-nothing javascript:void(0) do not count.",
			FalsePositives: "HTML exported from web pages with script links left in.",
			Check:          sign(func(p *phishSigns) string { return p.dangerous }),
		},
		{
			ID: RuleCredentialRequest, Clause: Phishing, Score: 6,
			Summary:        "The Subject or text asks to verify, confirm or update an account, password, login or payment details, or warns of a suspended account (English, German, French, Spanish phrases), and the message also carries one of the link signs above (link text mismatch, lookalike link, password form, dangerous link). The phrase alone and a link sign alone do not fire it.",
			FalsePositives: "Genuine account notices that link through an unlisted click-tracking service.",
			Check: func(c *Check) (string, bool) {
				p := c.phishing()
				with := p.firstSign()
				if with == "" {
					return "", false
				}
				phrase := credentialPhrase(DecodeHeader(unfold(c.Msg.Get("Subject"))))
				if phrase == "" {
					phrase = credentialPhrase(c.visibleText())
				}
				if phrase == "" {
					return "", false
				}
				return fmt.Sprintf("asks %q, with %s", phrase, with), true
			},
		},
	}
}

// phishSigns are the link signs of one message, found once and shared by
// the phishing rules: each is a reason, "" when not seen.
type phishSigns struct {
	mismatch, lookalike, password, dangerous string
}

// firstSign names the first link sign seen, for CONTENT_CREDENTIAL_REQUEST.
func (p *phishSigns) firstSign() string {
	for _, s := range []struct{ id, reason string }{
		{RulePasswordForm, p.password}, {RuleLinkLookalike, p.lookalike},
		{RuleLinkTextMismatch, p.mismatch}, {RuleDangerousLink, p.dangerous},
	} {
		if s.reason != "" {
			return s.id + " (" + s.reason + ")"
		}
	}
	return ""
}

// maxPhishText bounds the text searched for credential phrases.
const maxPhishText = 64 << 10

// phishing returns the message's link signs, once per message.
func (c *Check) phishing() *phishSigns {
	if c.phish != nil {
		return c.phish
	}
	p := &phishSigns{}
	c.phish = p
	parts := c.textParts()
	for i := range parts {
		part := &parts[i]
		if !part.isHTML {
			continue
		}
		f := part.html()
		where := "the HTML body"
		if part.name != "" {
			where = fmt.Sprintf("attached HTML file %q", boundedText(part.name, 60))
		}
		if p.password == "" && f.password != "" {
			p.password = fmt.Sprintf("password field in %s, in %s", f.password, where)
		}
		if p.dangerous == "" && f.dangerous != "" {
			p.dangerous = fmt.Sprintf("%s in %s", boundedText(f.dangerous, 80), where)
		}
		if p.mismatch == "" {
			p.mismatch = textMismatch(f.anchors)
		}
	}
	p.lookalike = c.lookalikeLink()
	return p
}

// visibleText returns the text of the body parts (HTML as its visible
// text), at most about maxPhishText bytes.
func (c *Check) visibleText() string {
	var text strings.Builder
	parts := c.allTextParts()
	for i := range parts {
		part := &parts[i]
		if part.name != "" || text.Len() >= maxPhishText {
			continue
		}
		if part.isHTML {
			text.WriteString(part.html().text)
		} else {
			text.WriteString(part.text)
		}
		text.WriteByte('\n')
	}
	return text.String()
}

// textMismatch returns a reason for the first anchor whose text shows a
// domain other than its target's, or "".
func textMismatch(anchors []htmlAnchor) string {
	for _, a := range anchors {
		shown := domainInText(a.text)
		if shown == "" {
			continue
		}
		target := linkHost(a.href, "")
		if target == "" || isLinkRedirector(target) {
			continue
		}
		rs, rt := registrable(shown), registrable(target)
		if rs == rt {
			continue
		}
		if ls, _ := domainLabel(rs); ls != "" {
			if lt, _ := domainLabel(rt); ls == lt {
				continue // the same name under another suffix
			}
		}
		return fmt.Sprintf("link text %q leads to %q", boundedText(strings.TrimSpace(a.text), 60), boundedText(target, 60))
	}
	return ""
}

// linkHost returns the lowercase host of an http or https link, or
// fallback when the link is not one (relative, mailto:, tel:, ...) or its
// host is no host name.
func linkHost(href, fallback string) string {
	u, err := url.Parse(strings.TrimSpace(href))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return fallback
	}
	h := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if !isHostName(h) {
		return fallback
	}
	return h
}

// isHostName reports whether h is a dotted name of letters, digits and
// hyphens (Unicode letters allowed) or an IP address.
func isHostName(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	if !strings.Contains(h, ".") || strings.HasPrefix(h, ".") || strings.Contains(h, "..") {
		return false
	}
	for _, r := range h {
		if !(r == '.' || r == '-' || unicode.IsLetter(r) || unicode.IsDigit(r)) {
			return false
		}
	}
	return true
}

// domainInText returns the host that a link's visible text shows when the
// text is a web address, a domain or an e-mail address (one word whose
// host ends in a known public suffix), else "".
func domainInText(s string) string {
	s = strings.ToLower(strings.Trim(strings.TrimSpace(s), ".,;:!?()[]<>\"'"))
	if s == "" || strings.ContainsAny(s, " \t\r\n") {
		return ""
	}
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	}
	if i := strings.IndexAny(s, "/?#"); i >= 0 {
		s = s[:i] // the path, which may hold an address (?e=jm@example.com)
	}
	if at := strings.LastIndexByte(s, '@'); at >= 0 {
		s = s[at+1:] // an e-mail address, or user info before the host
	}
	if i := strings.IndexByte(s, ':'); i >= 0 {
		s = s[:i] // a port
	}
	s = strings.TrimSuffix(s, ".")
	if !isHostName(s) {
		return ""
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return s
	}
	suffix, icann := publicsuffix.PublicSuffix(s)
	if !icann || suffix == s {
		return ""
	}
	return s
}

// linkRedirectors are the click-tracking hosts of the big e-mail service
// providers and mail-security link rewriters: newsletters show the
// sender's address and link through them.
var linkRedirectors = []string{
	"list-manage.com", "mailchimp.com", "mcsv.net", "sendgrid.net", "mailgun.org", "mandrillapp.com",
	"rs6.net", "createsend.com", "cmail19.com", "cmail20.com", "exacttarget.com", "hubspotlinks.com",
	"sparkpostmail.com", "mjt.lu", "sendibt2.com", "sendibt3.com", "klclick.com", "klclick1.com",
	"awstrack.me", "urldefense.com", "urldefense.proofpoint.com", "safelinks.protection.outlook.com",
	"emltrk.com", "ctctcdn.com", "constantcontact.com", "mailjet.com", "salesforce.com",
}

func isLinkRedirector(host string) bool {
	_, ok := hostMatches(host, linkRedirectors)
	return ok
}

// lookalikeLink returns a reason for the first link host that imitates a
// protected brand's or a customer's domain, or "".
func (c *Check) lookalikeLink() string {
	if c.lex == nil {
		return ""
	}
	seen := map[string]bool{}
	for _, host := range c.urlHosts() {
		if seen[host] || strings.HasPrefix(host, "[") {
			continue
		}
		seen[host] = true
		if _, err := netip.ParseAddr(host); err == nil || c.lex.ownBrandDomain(host) || c.OwnsDomain(host) {
			continue
		}
		p := c.domain(host)
		if ref, how, ok := p.lookalikeIn(c.lex.brandIndex); ok {
			return fmt.Sprintf("link to %q imitates %q (%s)", boundedText(host, 80), ref.domain, how)
		}
		if ix := c.lex.customerIndex; ix != nil {
			if _, isCustomer := ix.byDomain[p.reg]; isCustomer {
				continue
			}
			if ref, how, ok := p.lookalikeIn(ix); ok && !c.OwnsDomain(ref.domain) {
				return fmt.Sprintf("link to %q imitates customer domain %q (%s)", boundedText(host, 80), ref.domain, how)
			}
		}
	}
	return ""
}

// credentialPhrases are requests for credentials or payment details and
// threats to an account, lowercase.
var credentialPhrases = regexp.MustCompile(
	`\b(?:verify|confirm|update|validate|re-?activate|unlock|restore|re-?enter|re-?confirm|secure)\s+(?:your\s+|the\s+|my\s+)?(?:[a-z0-9-]+\s+)?(?:account|password|passcode|login|log-in|sign-in|credentials|identity|mailbox|e-?mail account|payment|billing|card|bank(?:ing)? details)\b` +
		`|\b(?:account|mailbox)\s+(?:has been|will be|is)\s+(?:temporarily\s+)?(?:suspended|locked|limited|disabled|closed|restricted|deactivated)\b` +
		`|\byour\s+password\s+(?:has expired|will expire|expires)\b` +
		`|\b(?:unusual|suspicious)\s+(?:sign-in|login|log-in)\s+activity\b` +
		`|\b(?:bestätigen|verifizieren|aktualisieren)\s+sie\s+(?:ihr|ihre|ihren)\s+(?:konto|passwort|zahlungs\S*|kontodaten|kreditkarte)` +
		`|\b(?:vérifiez|vérifier|confirmez|confirmer|mettez à jour|mettre à jour)\s+(?:votre|vos)\s+(?:compte|mot de passe|informations de paiement|identifiants|carte)` +
		`|\b(?:verifique|confirme|actualice)\s+su\s+(?:cuenta|contraseña|información de pago|tarjeta)`)

// credentialPhrase returns the first credential request in s, bounded, or "".
func credentialPhrase(s string) string {
	if len(s) > maxPhishText {
		s = s[:maxPhishText]
	}
	m := credentialPhrases.FindString(strings.ToLower(s))
	return boundedText(strings.Join(strings.Fields(m), " "), 60)
}

// boundedText makes text from a message safe for a reason: control and
// format characters dropped, at most n bytes cut on a character boundary.
func boundedText(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError {
			return -1
		}
		return r
	}, s)
	return cutText(s, n)
}

// cutText returns s cut to at most n bytes on a character boundary, with
// "..." when cut.
func cutText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

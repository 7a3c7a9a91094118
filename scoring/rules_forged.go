package scoring

import (
	"fmt"
	"strings"
	"time"

	"github.com/abusemilter/abusemilter/identity"
)

// Rule IDs of the forged-headers clause.
const (
	RuleFromMultiple       = "FROM_MULTIPLE"
	RuleFromMultiNoSender  = "FROM_MULTI_NO_SENDER"
	RuleFromNoAddress      = "FROM_NO_ADDRESS"
	RuleDuplicateHeader    = "DUPLICATE_HEADER"
	RuleTraceOwnMTA        = "TRACE_FORGED_OWN_MTA"
	RuleTraceProvider      = "TRACE_FORGED_PROVIDER"
	RuleMessageIDInvalid   = "MESSAGE_ID_INVALID"
	RuleDateMissing        = "DATE_MISSING"
	RuleDateInvalid        = "DATE_INVALID"
	RuleDateFuture         = "DATE_FUTURE"
	RuleDateOld            = "DATE_OLD"
	RuleDKIMForeign        = "DKIM_FOREIGN_SIGNATURE"
	RuleEncodedAddress     = "HEADER_ENCODED_ADDRESS"
	RuleHeaderControlChars = "HEADER_CONTROL_CHARS"
	RuleHeaderLineTooLong  = "HEADER_LINE_TOO_LONG"
	RuleNullSenderAuth     = "NULL_SENDER_AUTHENTICATED"
	RulePHPScript          = "PHP_SCRIPT_SIGNS"
)

func forgedHeaderRules() []Rule {
	return []Rule{
		{
			ID: RuleFromMultiple, Clause: ForgedHeaders, Score: 10, Decisive: true,
			Summary:        "The message has more than one From header (RFC 5322 allows exactly one); receivers may show either.",
			FalsePositives: "None known from real mail programs.",
			Check: func(c *Check) (string, bool) {
				if n := c.Count("From"); n > 1 {
					return fmt.Sprintf("%d From headers", n), true
				}
				return "", false
			},
		},
		{
			ID: RuleFromMultiNoSender, Clause: ForgedHeaders, Score: 6,
			Summary:        "From names several addresses but there is no Sender header (RFC 5322 section 3.6.2 requires one).",
			FalsePositives: "Rare hand-written messages with co-authors.",
			Check: func(c *Check) (string, bool) {
				from, _ := c.From()
				if len(from) > 1 && c.Count("Sender") == 0 {
					return fmt.Sprintf("From has %d addresses and no Sender", len(from)), true
				}
				return "", false
			},
		},
		{
			ID: RuleFromNoAddress, Clause: ForgedHeaders, Score: 7,
			Summary:        "From is missing, or holds no parseable address (a display name or encoded word alone), hiding who sent the message.",
			FalsePositives: "Broken scripts that omit From (the MTA may add one); scored, not decisive.",
			Check: func(c *Check) (string, bool) {
				from, err := c.From()
				if err == errMissingHeader {
					return "no From header", true
				}
				if len(from) == 0 {
					return fmt.Sprintf("no address in From %q", truncate(unfold(c.Msg.Get("From")), 80)), true
				}
				return "", false
			},
		},
		{
			ID: RuleDuplicateHeader, Clause: ForgedHeaders, Score: 6,
			Summary:        "A header allowed once (Sender, Reply-To, To, Cc, Subject, Message-ID, Date) appears more than once.",
			FalsePositives: "Very old or broken mailers; scored.",
			Check: func(c *Check) (string, bool) {
				for _, name := range []string{"Sender", "Reply-To", "To", "Cc", "Subject", "Message-ID", "Date"} {
					if n := c.Count(name); n > 1 {
						return fmt.Sprintf("%d %s headers", n, name), true
					}
				}
				return "", false
			},
		},
		{
			ID: RuleTraceOwnMTA, Clause: ForgedHeaders, Score: 10, Decisive: true,
			Summary:        "A Received, Authentication-Results or ARC header written by the client names one of the provider's own mail servers (settings own_mtas) as receiving host or authserv-id: it claims a hop or check that never happened.",
			FalsePositives: "Forwarder accounts are exempt. A webmail or relay host of the provider that submits through this milter must not be listed in own_mtas.",
			Check: func(c *Check) (string, bool) {
				if c.forwarder() || c.lex == nil || len(c.lex.ownMTAs) == 0 {
					return "", false
				}
				return traceClaim(c, c.lex.ownMTAs)
			},
		},
		{
			ID: RuleTraceProvider, Clause: ForgedHeaders, Score: 8,
			Summary:        "A Received, Authentication-Results or ARC header written by the client names a big mail provider (Google, Microsoft, Yahoo, Apple, ...) as receiving host or authserv-id.",
			FalsePositives: "Mail resubmitted from a provider mailbox (redirect, bounce in the mail client) keeps its trace, and so does mail a Microsoft 365 or Google Workspace tenant relays through the provider (outbound connector, smarthost): configure such accounts as forwarders, which are exempt. Received headers from the customer's own hosts (its own domains, private or unqualified names) never count.",
			Check: func(c *Check) (string, bool) {
				if c.forwarder() {
					return "", false
				}
				return traceClaim(c, bigProviders)
			},
		},
		{
			ID: RuleMessageIDInvalid, Clause: ForgedHeaders, Score: 3,
			Summary:        "Message-ID is present but not a valid msg-id (<left@right>, RFC 5322 section 3.6.4). Its right-hand side alone is no evidence.",
			FalsePositives: "Some old or home-made mailers write bare ids; scored low.",
			Check: func(c *Check) (string, bool) {
				if c.Count("Message-ID") == 0 {
					return "", false
				}
				id := strings.TrimSpace(unfold(c.Msg.Get("Message-ID")))
				if !validMsgID(id) {
					return fmt.Sprintf("Message-ID %q is not <left@right>", truncate(id, 80)), true
				}
				return "", false
			},
		},
		{
			ID: RuleDateMissing, Clause: ForgedHeaders, Score: 2,
			Summary:        "There is no Date header (RFC 5322 requires one).",
			FalsePositives: "Minimal scripts that rely on the MTA to add Date.",
			Check: func(c *Check) (string, bool) {
				if c.Count("Date") == 0 {
					return "no Date header", true
				}
				return "", false
			},
		},
		{
			ID: RuleDateInvalid, Clause: ForgedHeaders, Score: 4,
			Summary:        "The Date header does not parse as an RFC 5322 date.",
			FalsePositives: "Old mailers writing asctime or localised dates.",
			Check: func(c *Check) (string, bool) {
				if c.Count("Date") == 0 {
					return "", false
				}
				if _, ok := c.date(); !ok {
					return fmt.Sprintf("Date %q does not parse", truncate(unfold(c.Msg.Get("Date")), 80)), true
				}
				return "", false
			},
		},
		{
			ID: RuleDateFuture, Clause: ForgedHeaders, Score: 4,
			Summary:        "The Date header is more than a day ahead of the clock.",
			FalsePositives: "A sender machine with a clock set far ahead.",
			Check: func(c *Check) (string, bool) {
				if d, ok := c.date(); ok && d.Sub(c.Now) > 24*time.Hour {
					return fmt.Sprintf("Date is %s ahead", d.Sub(c.Now).Round(time.Hour)), true
				}
				return "", false
			},
		},
		{
			ID: RuleDateOld, Clause: ForgedHeaders, Score: 1,
			Summary:        "The Date header is more than three days old: weak evidence of a replayed or queued spam run, never decisive.",
			FalsePositives: "Messages kept in an outbox, drafts sent late, clocks set back.",
			Check: func(c *Check) (string, bool) {
				if d, ok := c.date(); ok && c.Now.Sub(d) > 72*time.Hour {
					return fmt.Sprintf("Date is %s old", c.Now.Sub(d).Round(time.Hour)), true
				}
				return "", false
			},
		},
		{
			ID: RuleDKIMForeign, Clause: ForgedHeaders, Score: 6,
			Summary:        "The client submitted a DKIM-Signature whose d= is a domain the account may not send as: the customer cannot hold that key, so the signature is forged or replayed. Verified over the whole body when the caller streams it (DKIMStream); the reason says verified, failed or not verified.",
			FalsePositives: "Resubmitted (redirected) messages keep their signatures, and a Microsoft 365 or Google Workspace tenant relaying through the provider signs with d=<tenant>.onmicrosoft.com or similar: configure such accounts as forwarders, which are exempt. A d= in the account's own organisational domain is its own.",
			Check: func(c *Check) (string, bool) {
				if c.forwarder() || c.Account == nil {
					return "", false
				}
				for _, v := range c.Msg.Values("DKIM-Signature") {
					d := dkimTag(v, "d")
					if d == "" || c.ownsOrgDomain(d) {
						continue
					}
					return fmt.Sprintf("DKIM-Signature d=%q (%s) is not a domain of account %q", d, dkimState(c.Msg.DKIM, d), c.Account.Name), true
				}
				return "", false
			},
		},
		{
			ID: RuleEncodedAddress, Clause: ForgedHeaders, Score: 5,
			Summary:        "An address header hides its content in RFC 2047 encoded words: an encoded word inside the address itself, or one whose decoded text holds '@', '<', '>' or control characters and so reads as an address.",
			FalsePositives: "Encoded display names are normal; only these tricks fire.",
			Check: func(c *Check) (string, bool) {
				for _, name := range []string{"From", "Sender", "Reply-To", "To", "Cc", "Resent-From"} {
					for _, v := range c.Msg.Values(name) {
						if why := encodedWordTrick(v); why != "" {
							return name + ": " + why, true
						}
					}
				}
				return "", false
			},
		},
		{
			ID: RuleHeaderControlChars, Clause: ForgedHeaders, Score: 6,
			Summary:        "A header holds a NUL or a bare CR, which receivers and filters split differently.",
			FalsePositives: "None known from real mail programs.",
			Check: func(c *Check) (string, bool) {
				for _, h := range c.Msg.Headers {
					if strings.IndexByte(h.Name, 0) >= 0 || strings.IndexByte(h.Value, 0) >= 0 {
						return fmt.Sprintf("NUL in header %q", truncate(h.Name, 40)), true
					}
					if hasBareCR(h.Name) || hasBareCR(h.Value) {
						return fmt.Sprintf("bare CR in header %q", truncate(h.Name, 40)), true
					}
				}
				return "", false
			},
		},
		{
			ID: RuleHeaderLineTooLong, Clause: ForgedHeaders, Score: 3,
			Summary:        "A header line is longer than 998 characters (RFC 5322 section 2.1.1).",
			FalsePositives: "Some mailers write long unfolded References or Content-Type lines.",
			Check: func(c *Check) (string, bool) {
				for _, h := range c.Msg.Headers {
					first := true
					for line := range strings.Lines(h.Value) {
						n := len(strings.TrimRight(line, "\r\n"))
						if first {
							n += len(h.Name) + 2
							first = false
						}
						if n > 998 {
							return fmt.Sprintf("header %q has a %d-character line", truncate(h.Name, 40), n), true
						}
					}
				}
				return "", false
			},
		},
		{
			ID: RuleNullSenderAuth, Clause: ForgedHeaders, Score: 5,
			Summary:        "An authenticated account submits with the null envelope sender <>, which only MTAs use for bounces; from a customer it makes undeliverable mail unreturnable.",
			FalsePositives: "Some mail clients send read receipts (MDN) with <>.",
			Check: func(c *Check) (string, bool) {
				if c.Env.MailFrom == "" && !c.Env.SenderUnknown && c.Env.Authenticated() {
					return fmt.Sprintf("null sender from login %q", c.Env.AuthLogin), true
				}
				return "", false
			},
		},
		{
			ID: RulePHPScript, Clause: ForgedHeaders, Score: 6,
			Summary:        "Signs of mail written by a PHP script (X-PHP-Script, X-PHP-Originating-Script, a PHPMailer or PHP X-Mailer) from an account that declares no web application: a compromised site or an uploaded mailer.",
			FalsePositives: "Accounts that run a web shop or CMS must declare web_app: true.",
			Check: func(c *Check) (string, bool) {
				if c.Account == nil || c.Account.WebApp || c.forwarder() {
					return "", false
				}
				for _, name := range []string{"X-PHP-Originating-Script", "X-PHP-Script"} {
					if v := c.Msg.Get(name); v != "" {
						return fmt.Sprintf("%s %q", name, truncate(unfold(v), 80)), true
					}
				}
				xm := unfold(c.Msg.Get("X-Mailer"))
				if l := strings.ToLower(xm); strings.Contains(l, "phpmailer") || strings.HasPrefix(l, "php/") || strings.HasPrefix(l, "php ") {
					return fmt.Sprintf("X-Mailer %q", truncate(xm, 80)), true
				}
				return "", false
			},
		},
	}
}

// ownsOrgDomain reports whether the account may use domain d, or owns a
// domain in the same organisational (registrable) domain, as DKIM relaxed
// alignment counts it (RFC 7489 section 3.1.1).
func (c *Check) ownsOrgDomain(d string) bool {
	if c.Owns("postmaster@" + d) {
		return true
	}
	org := registrable(d)
	for _, own := range c.Account.Domains() {
		if registrable(own) == org {
			return true
		}
	}
	return false
}

// traceClaim looks for a Received "by" host, an Authentication-Results
// authserv-id or an ARC header naming a host in list, that is not under
// one of the account's own domains.
func traceClaim(c *Check, list []string) (string, bool) {
	for _, h := range c.Msg.Headers {
		var host, what string
		name := h.key()
		switch {
		case name == "received":
			host, what = receivedBy(h.Value), "Received by"
		case name == "authentication-results" || name == "arc-authentication-results":
			host, what = authservID(h.Value), h.Name+" authserv-id"
		case name == "arc-seal" || name == "arc-message-signature":
			host, what = dkimTag(h.Value, "d"), h.Name+" d="
		default:
			continue
		}
		if host == "" || !strings.Contains(host, ".") || c.OwnsDomain(host) {
			continue
		}
		if m, ok := hostMatches(host, list); ok {
			return fmt.Sprintf("%s %q (%s)", what, host, m), true
		}
	}
	return "", false
}

// receivedBy returns the host after "by" in a Received value.
func receivedBy(v string) string {
	f := strings.Fields(unfold(v))
	for i := 0; i+1 < len(f); i++ {
		if strings.EqualFold(f[i], "by") {
			return strings.ToLower(strings.Trim(f[i+1], "();[]"))
		}
	}
	return ""
}

// authservID returns the authserv-id of an Authentication-Results value
// (RFC 8601), skipping an ARC instance tag "i=N;".
func authservID(v string) string {
	parts := strings.Split(unfold(v), ";")
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" || strings.HasPrefix(strings.ToLower(p), "i=") {
			continue
		}
		if f := strings.Fields(p); len(f) > 0 {
			return strings.ToLower(f[0])
		}
	}
	return ""
}

// dkimTag returns the value of tag in a DKIM-style tag list ("d=example.com; s=x").
func dkimTag(v, tag string) string {
	for _, p := range strings.Split(unfold(v), ";") {
		k, val, ok := strings.Cut(p, "=")
		if ok && strings.EqualFold(strings.TrimSpace(k), tag) {
			return strings.ToLower(strings.Join(strings.Fields(val), ""))
		}
	}
	return ""
}

// dkimState describes what verification said about a domain's signature.
func dkimState(results []DKIMResult, d string) string {
	if results == nil {
		return "not verified"
	}
	for _, r := range results {
		if strings.EqualFold(r.Domain, d) {
			if r.Verified {
				return "verified: a replayed signature"
			}
			if r.Err != "" {
				return "fails verification: " + truncate(r.Err, 60)
			}
		}
	}
	return "not verified"
}

// date returns the parsed Date header.
func (c *Check) date() (time.Time, bool) {
	if !c.dateParsed {
		c.dateParsed = true
		if v := c.Msg.Get("Date"); strings.TrimSpace(v) != "" {
			t, err := ParseDate(v)
			c.dateValue, c.dateOK = t, err == nil
		}
	}
	return c.dateValue, c.dateOK
}

// validMsgID reports whether s is "<left@right>" with both sides non-empty
// and no spaces, angle brackets or further '@' (RFC 5322 msg-id, allowing
// the obsolete forms real mailers write).
func validMsgID(s string) bool {
	if len(s) < 5 || s[0] != '<' || s[len(s)-1] != '>' {
		return false
	}
	left, right, ok := strings.Cut(s[1:len(s)-1], "@")
	if !ok || left == "" || right == "" || strings.Contains(right, "@") {
		return false
	}
	return !strings.ContainsAny(left+right, " \t<>\x00\r\n")
}

// encodedWordTrick says how an address header misuses encoded words, or "".
func encodedWordTrick(v string) string {
	if !strings.Contains(v, "=?") {
		return ""
	}
	raw := unfold(v)
	// An encoded word inside <...> is never decoded by receivers as an address.
	for rest := raw; ; {
		lt := strings.IndexByte(rest, '<')
		if lt < 0 {
			break
		}
		gt := strings.IndexByte(rest[lt:], '>')
		if gt < 0 {
			break
		}
		if strings.Contains(rest[lt:lt+gt], "=?") {
			return "encoded word inside an address"
		}
		rest = rest[lt+gt+1:]
	}
	for rest := raw; ; {
		i := strings.Index(rest, "=?")
		if i < 0 {
			break
		}
		j := strings.Index(rest[i+2:], "?=")
		if j < 0 {
			break
		}
		word := rest[i : i+2+j+2]
		// The charset and encoding take two '?' of the word.
		if strings.Count(word, "?") >= 4 {
			dec, err := wordDecoder.DecodeHeader(word)
			if err == nil && dec != word {
				if strings.ContainsAny(dec, "@<>\x00\r\n") {
					return fmt.Sprintf("encoded word decodes to %q", truncate(dec, 60))
				}
			}
		}
		rest = rest[i+2+j+2:]
	}
	return ""
}

func hasBareCR(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '\r' && (i+1 == len(s) || s[i+1] != '\n') {
			return true
		}
	}
	return false
}

// truncate cuts s to n bytes for a reason text.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// domainOf returns the domain of an address in the canonical form
// (identity.CanonicalDomain: lowercase IDNA ASCII, no trailing dot).
func domainOf(addr string) string {
	_, d := identity.SplitAddress(strings.TrimSpace(addr))
	return identity.CanonicalDomain(d)
}

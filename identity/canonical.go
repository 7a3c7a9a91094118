package identity

import (
	"strings"

	"golang.org/x/net/idna"
)

// The canonical form. Every address and domain this project compares —
// envelope senders and recipients, header addresses, SASL logins, send_as
// patterns, sender login maps, account names made from logins, protected
// brands, customer domains, rate-limit subjects and abusectl's arguments —
// is compared in one form, so that a domain written in Unicode
// (SMTPUTF8, RFC 6531) and the same domain in its IDNA ASCII form
// (punycode, RFC 5891) are one domain, and so are its upper- and
// lowercase spellings and its spelling with a trailing dot:
//
//	Mjl@Hé.Mox.Example.  ->  mjl@xn--h-bga.mox.example
//
// A domain is lowercased, its trailing dot and surrounding space dropped,
// and turned into its IDNA ASCII form (UTS #46 mapping, non-transitional,
// as golang.org/x/net/idna's Lookup profile does); an ASCII label that is
// already punycode is decoded and encoded again, so that its own case
// spellings meet. A name IDNA refuses (underscores, an invalid punycode
// label) is kept lowercased. The local part of an address is lowercased;
// NormalizeAddress further drops a "+tag".

// CanonicalDomain returns a domain in the canonical form: lowercase IDNA
// ASCII without a trailing dot. "" stays "".
func CanonicalDomain(d string) string {
	d = strings.TrimSpace(d)
	d = strings.TrimSuffix(d, ".")
	if isPlainASCII(d) {
		return asciiLower(d)
	}
	lower := strings.ToLower(d)
	// Decode punycode labels first (the Punycode profile maps nothing),
	// then encode the Unicode form with the mapping profile.
	u, err := idna.Punycode.ToUnicode(lower)
	if err != nil {
		u = lower
	}
	if a, err := idna.Lookup.ToASCII(u); err == nil && a != "" {
		return strings.TrimSuffix(a, ".")
	}
	if a, err := idna.Punycode.ToASCII(lower); err == nil && a != "" {
		return a
	}
	return lower
}

// UnicodeDomain returns a canonical domain in its Unicode form (for
// display): punycode labels decoded. A name that does not decode is
// returned as given.
func UnicodeDomain(d string) string {
	u, err := idna.Punycode.ToUnicode(CanonicalDomain(d))
	if err != nil {
		return CanonicalDomain(d)
	}
	return u
}

// CanonicalAddress returns an address in the canonical form: surrounding
// space and angle brackets removed, the local part lowercased (a "+tag"
// kept) and the domain canonical (CanonicalDomain). A string without '@'
// is returned trimmed and lowercased.
func CanonicalAddress(addr string) string {
	a := strings.TrimSpace(addr)
	a = strings.TrimSuffix(strings.TrimPrefix(a, "<"), ">")
	at := strings.LastIndexByte(a, '@')
	if at < 0 {
		return strings.ToLower(a)
	}
	local, domain := strings.ToLower(a[:at]), CanonicalDomain(a[at+1:])
	if local == a[:at] && domain == a[at+1:] {
		return a // already canonical: no copy
	}
	return local + "@" + domain
}

// CanonicalLogin returns a SASL login in the form logins are looked up and
// ad-hoc accounts named in: lowercased and trimmed, and, when the login is
// an address, with its domain canonical, so that mjl@hé.example and
// mjl@xn--h-bga.example are one login.
func CanonicalLogin(login string) string {
	l := strings.TrimSpace(login)
	if strings.IndexByte(l, '@') > 0 {
		return CanonicalAddress(l)
	}
	return strings.ToLower(l)
}

// CanonicalPattern returns a send_as pattern or sender-login-map key in
// the canonical form: "any", an address, "@domain", "*.domain" or
// ".domain", or a domain, each with its domain canonical.
func CanonicalPattern(p string) string {
	p = strings.TrimSpace(p)
	switch l := strings.ToLower(p); {
	case l == "any" || l == "*" || l == "":
		return l
	case strings.HasPrefix(l, "*."):
		return "*." + CanonicalDomain(p[2:])
	case strings.HasPrefix(l, "@"):
		return "@" + CanonicalDomain(p[1:])
	case strings.HasPrefix(l, "."):
		return "." + CanonicalDomain(p[1:])
	case strings.Contains(l, "@"):
		return CanonicalAddress(p)
	}
	return CanonicalDomain(p)
}

// isPlainASCII reports whether s is ASCII and has no punycode label
// ("xn--", any case), so that lowercasing alone makes it canonical.
func isPlainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 {
			return false
		}
		if (c == 'x' || c == 'X') && (i == 0 || s[i-1] == '.') && i+3 < len(s) &&
			(s[i+1] == 'n' || s[i+1] == 'N') && s[i+2] == '-' && s[i+3] == '-' {
			return false
		}
	}
	return true
}

// asciiLower lowercases ASCII without allocating when s is lowercase.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// CanonicalAccountName returns an account name as the limiter counts it
// and abusectl names it: an account made from an address login is named
// by the login's canonical form (CanonicalLogin), so a name that is an
// address is made canonical; any other name is kept as written.
func CanonicalAccountName(name string) string {
	n := strings.TrimSpace(name)
	if IsAddress(n) {
		return CanonicalLogin(n)
	}
	return n
}

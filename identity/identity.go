// Package identity decides which account a submission belongs to and which
// sender addresses that account may use: SASL logins and client networks map
// to accounts, accounts carry send-as patterns (exact address, whole domain,
// subdomains, or any), and a Postfix-style smtpd_sender_login_maps file may
// add more. Addresses and domains are compared in one canonical form
// (canonical.go: lowercase, IDNA ASCII domains, no trailing dot), and
// sender addresses after NormalizeAddress.
package identity

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// Account is one sending customer and what it may send as.
type Account struct {
	Name string
	// AnySender allows every sender address (send_as: any).
	AnySender bool
	// Forwarder marks an account that resubmits other people's mail
	// (.forward, Sieve redirects, list servers): foreign From addresses are
	// expected, and so are Received headers from elsewhere.
	Forwarder bool
	// WebApp marks an account that declares a web application (PHP mailer
	// signatures from it are expected).
	WebApp bool
	// Ad-hoc is true for accounts synthesised from a login that is an e-mail
	// address rather than configured.
	AdHoc bool

	addresses map[string]bool // exact, normalised
	domains   map[string]bool // whole domain
	subtrees  []string        // ".example.com": any subdomain
}

// NewAccount builds an account from send-as patterns. A pattern is "any",
// an address ("alice@example.com"), a domain ("example.com", which means
// that domain only), or "*.example.com" / ".example.com" (subdomains only).
func NewAccount(name string, sendAs []string) (*Account, error) {
	a := &Account{Name: name}
	for _, p := range sendAs {
		if err := a.AddSendAs(p); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// AddSendAs adds one send-as pattern (see NewAccount).
func (a *Account) AddSendAs(pattern string) error {
	p := CanonicalPattern(pattern)
	switch {
	case p == "":
		return fmt.Errorf("account %q: empty send_as pattern", a.Name)
	case p == "any" || p == "*":
		a.AnySender = true
	case strings.HasPrefix(p, "*.") || strings.HasPrefix(p, "."):
		d := strings.TrimPrefix(strings.TrimPrefix(p, "*"), ".")
		if !validDomain(d) {
			return fmt.Errorf("account %q: send_as pattern %q: invalid domain", a.Name, pattern)
		}
		a.subtrees = append(a.subtrees, "."+d)
	case strings.HasPrefix(p, "@"):
		d := p[1:]
		if !validDomain(d) {
			return fmt.Errorf("account %q: send_as pattern %q: invalid domain", a.Name, pattern)
		}
		a.addDomain(d)
	case strings.Contains(p, "@"):
		n := NormalizeAddress(p)
		if _, d := SplitAddress(n); !validDomain(d) {
			return fmt.Errorf("account %q: send_as pattern %q: invalid address", a.Name, pattern)
		}
		if a.addresses == nil {
			a.addresses = make(map[string]bool)
		}
		a.addresses[n] = true
	default:
		if !validDomain(p) {
			return fmt.Errorf("account %q: send_as pattern %q: not an address, domain or \"any\"", a.Name, pattern)
		}
		a.addDomain(p)
	}
	return nil
}

func (a *Account) addDomain(d string) {
	if a.domains == nil {
		a.domains = make(map[string]bool)
	}
	a.domains[d] = true
}

// MaySendAs reports whether the account may use addr as a sender address
// (envelope sender, From, Sender, Resent-*). The null sender "" is never an
// address the account owns.
func (a *Account) MaySendAs(addr string) bool {
	if a == nil {
		return false
	}
	if a.AnySender {
		return true
	}
	n := NormalizeAddress(addr)
	if n == "" {
		return false
	}
	if a.addresses[n] {
		return true
	}
	_, d := SplitAddress(n)
	return a.OwnsDomain(d)
}

// OwnsDomain reports whether the whole domain d is the account's (by a
// domain or subdomain pattern; an exact address does not own its domain).
func (a *Account) OwnsDomain(d string) bool {
	if a == nil || d == "" {
		return false
	}
	d = CanonicalDomain(d)
	if a.domains[d] {
		return true
	}
	for _, s := range a.subtrees {
		if strings.HasSuffix(d, s) {
			return true
		}
	}
	return false
}

// Domains lists the domains the account owns or has an address in, sorted:
// what rules compare lookalikes against.
func (a *Account) Domains() []string {
	set := make(map[string]bool)
	for d := range a.domains {
		set[d] = true
	}
	for _, s := range a.subtrees {
		set[s[1:]] = true
	}
	for addr := range a.addresses {
		_, d := SplitAddress(addr)
		set[d] = true
	}
	out := make([]string, 0, len(set))
	for d := range set {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// NormalizeAddress is the form sender addresses are compared and counted
// in: the canonical address (CanonicalAddress: lowercase, IDNA ASCII
// domain, no trailing dot, no angle brackets) without a "+tag" in its
// local part, so that alice+news@Example.COM and alice@example.com count
// as one, and so do mjl@hé.example and mjl@xn--h-bga.example. A string
// without '@' is returned lowercased and trimmed.
func NormalizeAddress(addr string) string {
	a := CanonicalAddress(addr)
	at := strings.LastIndexByte(a, '@')
	if at < 0 {
		return a
	}
	local, domain := a[:at], a[at+1:]
	plus := strings.IndexByte(local, '+')
	if plus <= 0 {
		return a
	}
	return local[:plus] + "@" + domain
}

// SplitAddress splits addr at its last '@' into local part and domain. An
// address without '@' has an empty domain.
func SplitAddress(addr string) (local, domain string) {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return addr, ""
	}
	return addr[:at], addr[at+1:]
}

// IsAddress reports whether s looks like local@domain with a plausible domain.
func IsAddress(s string) bool {
	l, d := SplitAddress(strings.TrimSpace(s))
	return l != "" && validDomain(CanonicalDomain(d))
}

func validDomain(d string) bool {
	if d == "" || len(d) > 253 || strings.HasPrefix(d, ".") || strings.HasSuffix(d, ".") || strings.Contains(d, "..") {
		return false
	}
	for _, r := range d {
		if r == '@' || r == ' ' || r == '*' || r < 0x21 {
			return false
		}
	}
	return true
}

// NetworkAccount maps a client network to an account.
type NetworkAccount struct {
	Prefix  netip.Prefix
	Account string
}

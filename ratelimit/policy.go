package ratelimit

import (
	"net/netip"
	"time"
)

// Policy is the configured limit policy a store enforces. Overrides and
// exemptions set at run time by the admin CLI live in the store itself and
// take precedence over these.
type Policy struct {
	Limits Limits
	// AccountOverrides and SenderOverrides replace the rates of the named
	// dimensions for one account or sender address.
	AccountOverrides map[string]Limits
	SenderOverrides  map[string]Limits
	// Exempt accounts, sender addresses and client networks are never
	// counted or refused by a limit (locks still apply).
	ExemptAccounts map[string]bool
	ExemptSenders  map[string]bool
	ExemptNetworks []netip.Prefix
	Strikes        StrikePolicy
	// Desk configures the abuse desk's records and complaints.
	Desk DeskPolicy
}

// StrikePolicy says when strikes lock an account.
type StrikePolicy struct {
	// Threshold strikes within Window lock the account; 0 disables locking.
	Threshold int
	Window    time.Duration
	// LockFor is how long an automatic lock lasts; 0 means until unlocked.
	LockFor time.Duration
}

// ExemptClient reports whether addr is in an exempt network.
func (p *Policy) ExemptClient(addr netip.Addr) bool {
	if !addr.IsValid() {
		return false
	}
	addr = addr.Unmap()
	for _, n := range p.ExemptNetworks {
		if n.Contains(addr) {
			return true
		}
	}
	return false
}

// RatesFor returns the rates of dimension d that apply to an account and
// sender, after configured overrides (sender overrides win over account
// overrides, which win over the defaults).
func (p *Policy) RatesFor(d Dimension, account, sender string) []Rate {
	if o, ok := p.SenderOverrides[sender]; ok {
		if r, ok := o[d]; ok {
			return r
		}
	}
	if o, ok := p.AccountOverrides[account]; ok {
		if r, ok := o[d]; ok {
			return r
		}
	}
	return p.Limits[d]
}

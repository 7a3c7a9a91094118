package config

import (
	"fmt"
	"time"

	"github.com/abusemilter/abusemilter/ratelimit"
)

// LimitsConfig holds the default rates per dimension (each a list of
// "N/WINDOW" strings, all applying), the per-message recipient cap, per-
// sender overrides and exemptions.
type LimitsConfig struct {
	// MaxRecipientsPerMessage: recipients past it get 452 4.5.3 at RCPT.
	MaxRecipientsPerMessage int      `yaml:"max_recipients_per_message"`
	AccountMessages         []string `yaml:"account_messages"`
	AccountRecipients       []string `yaml:"account_recipients"`
	SenderMessages          []string `yaml:"sender_messages"`
	ClientMessages          []string `yaml:"client_messages"`
	AccountNewRecipients    []string `yaml:"account_new_recipients"`
	// Senders overrides rates per envelope sender address.
	Senders map[string]map[string][]string `yaml:"senders"`
	Exempt  ExemptConfig                   `yaml:"exempt"`
}

// ExemptConfig lists what no limit applies to.
type ExemptConfig struct {
	Accounts []string `yaml:"accounts"`
	Senders  []string `yaml:"senders"`
	Networks []string `yaml:"networks"`
}

// StrikesConfig says when repeated refusals lock an account.
type StrikesConfig struct {
	Threshold int      `yaml:"threshold"` // 0 disables locking
	Window    Duration `yaml:"window"`
	LockFor   Duration `yaml:"lock_for"` // 0: until unlocked
	// LockAction is what a locked account's mail gets: defer, reject or
	// hold (held for review at end of message).
	LockAction string `yaml:"lock_action"`
	// Contact is named in the reply to a locked account.
	Contact string `yaml:"contact"`
}

// DefaultLimits returns the built-in limits: 200 messages per account per
// hour and 100 recipients per message.
func DefaultLimits() LimitsConfig {
	return LimitsConfig{
		MaxRecipientsPerMessage: 100,
		AccountMessages:         []string{"200/1h"},
	}
}

// DefaultStrikes returns the built-in strike policy.
func DefaultStrikes() StrikesConfig {
	return StrikesConfig{Threshold: 10, Window: D(time.Hour), LockAction: "defer"}
}

// LimitDimensions maps config names to limit dimensions.
var LimitDimensions = map[string]ratelimit.Dimension{
	"account_messages":       ratelimit.AccountMessages,
	"account_recipients":     ratelimit.AccountRecipients,
	"sender_messages":        ratelimit.SenderMessages,
	"client_messages":        ratelimit.ClientMessages,
	"account_new_recipients": ratelimit.AccountNewRecipients,
}

func validateRates(e *errorList, path, dim string, rates []string) {
	if _, ok := LimitDimensions[dim]; !ok {
		e.add(path, "unknown limit %q (want one of account_messages, account_recipients, sender_messages, client_messages, account_new_recipients)", dim)
	}
	for i, r := range rates {
		if _, err := ratelimit.ParseRate(r); err != nil {
			e.add(fmt.Sprintf("%s[%d]", path, i), "%v", err)
		}
	}
}

func (c *Config) validateLimits(e *errorList) {
	l := &c.Limits
	if l.MaxRecipientsPerMessage < 0 {
		e.add("limits.max_recipients_per_message", "must not be negative (0 turns the cap off)")
	}
	for name, rates := range l.Dimensions() {
		validateRates(e, "limits."+name, name, rates)
	}
	for sender, dims := range l.Senders {
		for dim, rates := range dims {
			validateRates(e, "limits.senders."+sender+"."+dim, dim, rates)
		}
	}
	for i, n := range l.Exempt.Networks {
		if _, err := ParsePrefix(n); err != nil {
			e.add(fmt.Sprintf("limits.exempt.networks[%d]", i), "%v", err)
		}
	}
	if c.Strikes.Threshold < 0 {
		e.add("strikes.threshold", "must not be negative (0 turns locking off)")
	}
	e.duration("strikes.window", c.Strikes.Window)
	e.duration("strikes.lock_for", c.Strikes.LockFor)
	if c.Strikes.Threshold > 0 && c.Strikes.Window.Duration <= 0 {
		e.add("strikes.window", "must be positive when strikes.threshold is set")
	}
	e.oneOf("strikes.lock_action", c.Strikes.LockAction, "defer", "reject", "hold")
}

// Dimensions maps each limit dimension's config name to its rates.
func (l *LimitsConfig) Dimensions() map[string][]string {
	return map[string][]string{
		"account_messages":       l.AccountMessages,
		"account_recipients":     l.AccountRecipients,
		"sender_messages":        l.SenderMessages,
		"client_messages":        l.ClientMessages,
		"account_new_recipients": l.AccountNewRecipients,
	}
}

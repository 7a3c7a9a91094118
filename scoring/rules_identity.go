package scoring

import (
	"errors"
	"fmt"
	"strings"
)

// Rule IDs defined by the engine itself (not by a content rule).
const (
	RuleFromNotOwned       = "FROM_DOMAIN_NOT_OWNED"
	RuleRcptPerMessage     = "RCPT_PER_MESSAGE_LIMIT"
	RuleUnknownLogin       = "UNKNOWN_LOGIN"
	RuleUnknownClient      = "UNKNOWN_CLIENT"
	RuleLimiterUnavailable = "RATE_STORE_UNAVAILABLE"
)

// senderHeaders are the headers that name the message's author or sender;
// each address in them must be one the account may use.
var senderHeaders = []string{"From", "Sender", "Resent-From", "Resent-Sender"}

func fromDomainNotOwned() Rule {
	return Rule{
		ID: RuleFromNotOwned, Clause: Impersonation, Score: 10, Decisive: true,
		Summary:        "The envelope sender or an address in From, Sender, Resent-From or Resent-Sender is not one the account may send as.",
		FalsePositives: "Accounts that legitimately resubmit other people's mail (.forward, list servers) must be configured as forwarders (send_as: any).",
		Check: func(c *Check) (string, bool) {
			if c.Account == nil || c.Account.AnySender {
				return "", false
			}
			if c.Env.MailFrom != "" && !mayUse(c.Account, c.Env.MailFrom) {
				return fmt.Sprintf("envelope sender %q is not an address of account %q", c.Env.MailFrom, c.Account.Name), true
			}
			for _, name := range senderHeaders {
				// Malformed headers are parsed tolerantly: an address that can be
				// salvaged from them still has to be the account's.
				addrs, err := c.Addresses(name)
				if errors.Is(err, errTooManyAddresses) {
					// What was not checked cannot be shown to be the account's.
					return fmt.Sprintf("%s has %s; not all could be checked", name, err), true
				}
				for _, a := range addrs {
					if !mayUse(c.Account, a.Address) {
						return fmt.Sprintf("%s address %q is not an address of account %q", name, strings.ToLower(a.Address), c.Account.Name), true
					}
				}
			}
			return "", false
		},
	}
}

package scoring

import (
	"strings"
	"time"

	"github.com/abusemilter/abusemilter/identity"
)

// Resubmission is a received message turned back into the submission that
// produced it, for checking real mail as if it were sent through the milter.
type Resubmission struct {
	Env     *Envelope
	Account *identity.Account
	// Now is the clock to judge it by: the time of its newest Received
	// header, else its own Date.
	Now time.Time
	// Trace holds the headers set aside by StripTrace.
	Trace []Header
}

// AsReceived treats msg as received mail sent by an account that owns its
// From domain, the way the quality figures in docs/QUALITY.md are made: the
// receiving servers' trace headers are moved out of msg.Headers (see
// StripTrace); the envelope sender is the From address and the recipients
// the To and Cc addresses (at most 100, else one placeholder); a message a
// mailing list distributed (List-*, X-Mailman-Version, X-BeenThere, X-Loop,
// or Precedence bulk/list with a Sender) comes from a forwarder account,
// otherwise the Sender address is the account's too. fallback is the clock
// when the message has neither a Received time nor a parseable Date.
func AsReceived(msg *Message, login string, fallback time.Time) Resubmission {
	return AsReceivedAt(msg, login, fallback, nil)
}

// AsReceivedAt is AsReceived for mail that passed through the provider's
// own MTAs: the trace is set aside by StripTraceAt, so that a message with
// a Received header by one of ownMTAs keeps that header and all below it.
func AsReceivedAt(msg *Message, login string, fallback time.Time, ownMTAs []string) Resubmission {
	now, ok := ReceivedTime(msg.Headers)
	if !ok {
		if t, err := ParseDate(msg.Get("Date")); err == nil {
			now = t
		} else {
			now = fallback
		}
	}
	kept, trace := StripTraceAt(msg.Headers, ownMTAs)
	msg.Headers = kept
	acct := &identity.Account{Name: login}
	from := firstAddressOf(msg.Get("From"))
	if d := domainOf(from); d != "" {
		if err := acct.AddSendAs(d); err != nil {
			acct.AddSendAs(from) // a domain the pattern parser refuses: own the address only
		}
	}
	if listDistributed(msg) {
		acct.Forwarder, acct.AnySender = true, true
	} else if sender := firstAddressOf(msg.Get("Sender")); sender != "" {
		acct.AddSendAs(sender) // the agent that submitted it (RFC 5322 section 3.6.2)
	}
	env := &Envelope{AuthLogin: login, MailFrom: from}
	for _, name := range []string{"To", "Cc"} {
		for _, v := range msg.Values(name) {
			addrs, _ := parseAddressesTolerant(v)
			for _, a := range addrs {
				if len(env.Rcpts) < 100 {
					env.Rcpts = append(env.Rcpts, a.Address)
				}
			}
		}
	}
	if len(env.Rcpts) == 0 {
		env.Rcpts = []string{"recipient@example.net"}
	}
	return Resubmission{Env: env, Account: acct, Now: now, Trace: trace}
}

// listDistributed reports whether a mailing list resubmitted the message:
// list headers (RFC 2369, RFC 2919), Mailman markers, or Precedence
// bulk/list with a Sender.
func listDistributed(m *Message) bool {
	for _, h := range []string{"List-Id", "List-Post", "List-Unsubscribe", "Mailing-List", "X-Mailman-Version", "X-BeenThere", "X-Loop"} {
		if m.Get(h) != "" {
			return true
		}
	}
	prec := strings.ToLower(strings.TrimSpace(unfold(m.Get("Precedence"))))
	return (prec == "bulk" || prec == "list") && m.Get("Sender") != ""
}

// firstAddressOf returns the first address in a header value, lowercased,
// parsed tolerantly; "" when there is none.
func firstAddressOf(v string) string {
	addrs, _ := parseAddressesTolerant(v)
	if len(addrs) == 0 {
		return ""
	}
	return strings.ToLower(addrs[0].Address)
}

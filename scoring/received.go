package scoring

import (
	"net/mail"
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
// otherwise the addresses of Sender, Resent-From and Resent-Sender are the
// account's too (RFC 5322 sections 3.6.2 and 3.6.6: the agent that
// submitted or resent it). A message without a usable From address gets
// the first Return-Path that is an address as its envelope sender (the
// envelope its last hop recorded), else the first address of Sender,
// Resent-Sender or Resent-From, which the account owns; with none of these
// the envelope sender is unknown (Envelope.SenderUnknown), never the null
// sender. fallback is the clock when the message has neither a Received
// time nor a parseable Date.
func AsReceived(msg *Message, login string, fallback time.Time) Resubmission {
	return AsReceivedAt(msg, login, fallback, nil)
}

// resentHeaders name the agents that submitted or resent a message, whose
// addresses a reconstructed account owns besides the From domain.
var resentHeaders = []string{"Sender", "Resent-From", "Resent-Sender"}

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
	returnPath := ReturnPath(msg)
	kept, trace := StripTraceAt(msg.Headers, ownMTAs)
	msg.Headers = kept
	acct := &identity.Account{Name: login}
	from := firstAddressOf(msg.Get("From"))
	if d := domainOf(from); d != "" {
		if err := acct.AddSendAs(d); err != nil {
			acct.AddSendAs(from) // a domain the pattern parser refuses: own the address only
		}
	}
	agent := "" // the first address of Sender, Resent-Sender, Resent-From
	if listDistributed(msg) {
		acct.Forwarder, acct.AnySender = true, true
	} else {
		for _, name := range resentHeaders {
			for _, v := range msg.Values(name) {
				addrs, _ := parseAddressesTolerant(v)
				for _, a := range addrs {
					acct.AddSendAs(a.Address)
				}
			}
		}
	}
	for _, name := range []string{"Sender", "Resent-Sender", "Resent-From"} {
		if agent == "" {
			agent = firstAddressOf(msg.Get(name))
		}
	}
	env := &Envelope{AuthLogin: login, MailFrom: from}
	switch {
	case from != "":
	case returnPath != "":
		env.MailFrom = returnPath
		if !acct.AnySender {
			acct.AddSendAs(returnPath)
		}
	case agent != "":
		env.MailFrom = agent
	default:
		env.SenderUnknown = true
	}
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

// ReturnPath returns the address of the first Return-Path field that holds
// one, lowercased; "" when none does. A null Return-Path ("<>", a bounce)
// is no address and is passed over.
func ReturnPath(msg *Message) string {
	for _, v := range msg.Values("Return-Path") {
		if a := firstAddressOf(v); a != "" {
			return a
		}
	}
	return ""
}

// HeaderAddresses parses an address-list field value as the rules do:
// strictly, else salvaging every address it can (see Check.Addresses),
// at most MaxAddressesChecked of them.
func HeaderAddresses(v string) []*mail.Address {
	addrs, _ := parseAddressesTolerant(v)
	return addrs
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

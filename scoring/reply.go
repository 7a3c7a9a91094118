package scoring

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MaxReplyText is the longest reply text sent to a client. RFC 5321 allows
// 512 octets per reply line including the code and CRLF; this leaves room
// for the code, the enhanced code and an MTA's own prefix.
const MaxReplyText = 400

// SanitizeReplyText makes s safe to send as SMTP reply text whatever it
// contains: control characters (CR, LF, NUL, TAB) become spaces, non-ASCII
// runes become '?', '%' (a format character to Sendmail) becomes "pct",
// runs of spaces collapse, and the result is cut to MaxReplyText bytes.
func SanitizeReplyText(s string) string {
	var b strings.Builder
	b.Grow(min(len(s), MaxReplyText))
	space := false
	for _, r := range s {
		if b.Len() >= MaxReplyText {
			break
		}
		switch {
		case r < 0x20 || r == 0x7f || r == ' ':
			if !space && b.Len() > 0 {
				b.WriteByte(' ')
			}
			space = true
			continue
		case r == '%':
			b.WriteString("pct")
		case r > 0x7e:
			b.WriteByte('?')
		default:
			b.WriteRune(r)
		}
		space = false
	}
	out := strings.TrimRight(b.String(), " ")
	if len(out) > MaxReplyText {
		out = out[:MaxReplyText]
	}
	return out
}

// FormatReply builds one SMTP reply line from its parts. The text is
// sanitized; an empty text gets a generic one so the reply is never bare.
func FormatReply(code int, enhanced, text string) string {
	text = SanitizeReplyText(text)
	if text == "" {
		text = "Message refused by policy"
		if code/100 == 2 {
			text = "OK"
		}
	}
	return strconv.Itoa(code) + " " + enhanced + " " + text
}

// policyText is the reply text for a decision under a rule and clause, e.g.
// "Rejected under the e-mail abuse policy (impersonation: FROM_DOMAIN_NOT_OWNED)".
func policyText(action Action, clause Clause, rule, detail string) string {
	verb := "Rejected"
	switch action {
	case Defer:
		verb = "Deferred"
	case Hold:
		verb = "Held for review"
	}
	inner := string(clause) + ": " + rule
	if detail != "" {
		inner += " " + detail
	}
	return SanitizeReplyText(verb + " under the e-mail abuse policy (" + inner + ")")
}

// AcceptVerdict is the verdict for a message that passes.
func AcceptVerdict(findings []Finding, score float64) Verdict {
	return Verdict{Action: Accept, Code: 250, EnhancedCode: "2.0.0", Text: "OK", Findings: findings, Score: score}
}

// RejectVerdict rejects a message with 550 5.7.1 under the given rule.
func RejectVerdict(clause Clause, rule, detail string, findings []Finding, score float64) Verdict {
	return Verdict{
		Action: Reject, Code: 550, EnhancedCode: "5.7.1",
		Text: policyText(Reject, clause, rule, detail),
		Rule: rule, Clause: clause, Findings: findings, Score: score,
	}
}

// HoldVerdict holds a message for the abuse desk under the given rule: the
// client gets 250 2.0.0, the MTA puts the message on hold, and Text (e.g.
// "Held for review under the e-mail abuse policy (policy: ACCOUNT_LOCKED)")
// is the quarantine reason the MTA records.
func HoldVerdict(clause Clause, rule, detail string, findings []Finding, score float64) Verdict {
	return Verdict{
		Action: Hold, Code: 250, EnhancedCode: "2.0.0",
		Text: policyText(Hold, clause, rule, detail),
		Rule: rule, Clause: clause, Findings: findings, Score: score,
	}
}

// DeferVerdict defers a message with 451 4.7.1 under the given rule. A
// positive retryAfter is appended to the text so the customer knows when
// to try again.
func DeferVerdict(clause Clause, rule, detail string, retryAfter time.Duration, findings []Finding) Verdict {
	if retryAfter > 0 {
		secs := int64((retryAfter + time.Second - 1) / time.Second)
		if detail != "" {
			detail += ", "
		}
		detail += fmt.Sprintf("retry in %ds", secs)
	}
	return Verdict{
		Action: Defer, Code: 451, EnhancedCode: "4.7.1",
		Text: policyText(Defer, clause, rule, detail),
		Rule: rule, Clause: clause, Findings: findings, RetryAfter: retryAfter,
	}
}

// TooManyRecipientsVerdict refuses one recipient past the per-message cap
// with 452 4.5.3 (RFC 5321 section 4.5.3.1.10): the client sends it later
// in another transaction.
func TooManyRecipientsVerdict(limit int) Verdict {
	return Verdict{
		Action: Defer, Code: 452, EnhancedCode: "4.5.3",
		Text: SanitizeReplyText(fmt.Sprintf("Too many recipients in one message (spam-volume: RCPT_PER_MESSAGE_LIMIT %d); send the rest in another message", limit)),
		Rule: RuleRcptPerMessage, Clause: SpamVolume,
	}
}

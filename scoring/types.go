package scoring

import (
	"net/netip"
	"strings"
	"time"
)

// Action is what happens to a message or a recipient.
type Action int

// The outcomes of a decision.
// The zero Action means "not set" in Options, so that defaults apply.
const (
	Accept Action = iota + 1
	Defer         // SMTP 4xx: the client keeps the message and retries later
	Reject        // SMTP 5xx: the client bounces the message
	// Hold: the client gets 250, the MTA keeps the message on hold
	// (Postfix's hold queue, Sendmail's quarantine) for the abuse desk to
	// release or purge.
	Hold
)

// String returns the lowercase name used in logs, headers and reports.
func (a Action) String() string {
	switch a {
	case Accept:
		return "accept"
	case Defer:
		return "defer"
	case Reject:
		return "reject"
	case Hold:
		return "hold"
	}
	return "unknown"
}

// ParseAction reads an action as String writes it.
func ParseAction(s string) (Action, bool) {
	for _, a := range []Action{Accept, Defer, Reject, Hold} {
		if a.String() == s {
			return a, true
		}
	}
	return 0, false
}

// severity orders actions from accept (0) to reject: the most severe of
// several wins.
func (a Action) severity() int {
	switch a {
	case Hold:
		return 1
	case Defer:
		return 2
	case Reject:
		return 3
	}
	return 0
}

// Clause names the part of the e-mail abuse policy that a rule enforces.
type Clause string

// The clauses of the acceptable use policy's e-mail abuse section.
const (
	SpamVolume    Clause = "spam-volume"
	ForgedHeaders Clause = "forged-headers"
	Impersonation Clause = "impersonation"
	// Policy is used for decisions about the submission itself rather than
	// its content: unknown logins or clients, locked accounts.
	Policy Clause = "policy"
)

// Finding is one rule's observation about a message.
type Finding struct {
	Rule     string  `json:"rule"`     // stable rule ID, e.g. FROM_DOMAIN_NOT_OWNED
	Clause   Clause  `json:"clause"`   // policy clause the rule enforces
	Score    float64 `json:"score"`    // contribution to the message's total
	Decisive bool    `json:"decisive"` // the finding alone rejects the message
	Reason   string  `json:"reason"`   // for logs and reports; never sent over SMTP
}

// Verdict is the decision about a message (or one recipient), computed apart
// from acting on it.
type Verdict struct {
	Action       Action
	Code         int    // SMTP reply code: 250 (accept, hold), 451, 452, 550
	EnhancedCode string // RFC 3463 code: "2.0.0", "4.7.1", "4.5.3", "5.7.1"
	Text         string // SMTP reply text: ASCII, no CR/LF, no '%', bounded length
	Rule         string // deciding rule ID, empty for a plain accept
	Clause       Clause // clause of the deciding rule
	Score        float64
	Findings     []Finding
	RetryAfter   time.Duration // for deferrals caused by rate limits
	// Monitor is set when the engine runs in monitor mode: Action is what
	// enforce mode would have done, but the message must be accepted and
	// annotated instead.
	Monitor bool
	// LimiterError is set when the rate store failed and the fail mode decided.
	LimiterError string
	// RecordError is set when the abuse desk's record of a held or refused
	// message could not be written (the verdict stands).
	RecordError string
	// CampaignError is set when the store could not count the message's
	// campaign fingerprints: the campaign rules were left out.
	CampaignError string
}

// Reply returns the full SMTP reply line, e.g. "550 5.7.1 Rejected ...".
func (v Verdict) Reply() string {
	return FormatReply(v.Code, v.EnhancedCode, v.Text)
}

// RuleIDs lists the rule IDs of all findings, in order.
func (v Verdict) RuleIDs() []string {
	ids := make([]string, len(v.Findings))
	for i, f := range v.Findings {
		ids[i] = f.Rule
	}
	return ids
}

// Envelope is what the MTA told the milter about a submission, outside the
// message itself.
type Envelope struct {
	ClientAddr netip.Addr // zero when unknown (e.g. unix-socket local submission)
	ClientName string
	Helo       string
	AuthLogin  string // SASL login ({auth_authen}); empty when unauthenticated
	AuthType   string // {auth_type}
	QueueID    string // Postfix/Sendmail queue id ({i}); may be empty early on
	MailFrom   string // envelope sender without angle brackets; "" is the null sender
	// SenderUnknown is set when the envelope sender is not known: the
	// offline scanner reconstructing a message that names none. MailFrom
	// is then "" but is not the null sender, and rules about the envelope
	// sender skip it. The milter always knows the envelope.
	SenderUnknown bool
	Rcpts         []string
	// Time is when the message was submitted; the zero value means now (the
	// engine's clock). The offline scanner sets it to evaluate time-based
	// rules as of a message's own time.
	Time time.Time
}

// Authenticated reports whether the submission used SASL (or XCLIENT LOGIN).
func (e *Envelope) Authenticated() bool { return e.AuthLogin != "" }

// Header is one header field as the header reader gives it (ParseBytes,
// NewHeader; see parse.go): the name as written without surrounding
// whitespace, and the value after the colon without its first space,
// folded lines joined by "\n", without the final line end.
type Header struct {
	Name  string // e.g. "From"
	Value string
}

// Is reports whether the field is named name: compared case-insensitively
// and without surrounding whitespace, as MTAs compare field names.
func (h Header) Is(name string) bool {
	n := h.Name
	if len(n) > 0 && (n[0] == ' ' || n[0] == '\t' || n[len(n)-1] == ' ' || n[len(n)-1] == '\t') {
		n = trimWSP(n)
	}
	return strings.EqualFold(n, name)
}

// key is the field's name in the form Check's per-message tables use.
func (h Header) key() string { return strings.ToLower(trimWSP(h.Name)) }

// Message is the part of a message the rules look at: every header in order
// and a capped sample of the body.
type Message struct {
	Headers []Header
	// Body holds at most the configured sample size of the body.
	Body []byte
	// BodySize is the full body size in bytes, even when Body is truncated.
	BodySize int64
	// BodyTruncated reports that Body is only a prefix of the body.
	BodyTruncated bool
	// DKIM holds the results of verifying DKIM-Signature headers over the
	// whole body, when the caller streamed the body to a verifier. Nil means
	// not verified.
	DKIM []DKIMResult
	// Malware holds what was found by streaming the whole message to the
	// attachment inspection and the antivirus scanner (MalwareStream).
	// Nil means not streamed: the attachment rules then inspect the
	// headers and body sample.
	Malware *MalwareScan
}

// DKIMResult is the outcome of verifying one DKIM-Signature (RFC 6376).
type DKIMResult struct {
	Domain   string
	Verified bool
	Err      string // empty when verified
}

// Get returns the value of the first field with the given name (see
// Header.Is), or "".
func (m *Message) Get(name string) string {
	for _, h := range m.Headers {
		if h.Is(name) {
			return h.Value
		}
	}
	return ""
}

// Values returns every value of the named header, in order.
func (m *Message) Values(name string) []string {
	var vs []string
	for _, h := range m.Headers {
		if h.Is(name) {
			vs = append(vs, h.Value)
		}
	}
	return vs
}

// Count returns how many headers have the given name.
func (m *Message) Count(name string) int {
	n := 0
	for _, h := range m.Headers {
		if h.Is(name) {
			n++
		}
	}
	return n
}

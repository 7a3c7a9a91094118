package ratelimit

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/abusemilter/abusemilter/identity"
)

// SubjectKind says what a Subject names.
type SubjectKind string

// The kinds of counted subjects.
const (
	KindAccount SubjectKind = "acct"
	KindSender  SubjectKind = "sender"
	KindClient  SubjectKind = "client"
)

// Subject is what limits are counted for: an account, an envelope sender
// address or a client IP address.
type Subject struct {
	Kind SubjectKind
	Name string
}

// Account returns the subject of an account.
func Account(name string) Subject { return Subject{KindAccount, name} }

// Sender returns the subject of an envelope sender, normalised (+tag and
// case) as the limiter counts it.
func Sender(addr string) Subject { return Subject{KindSender, identity.NormalizeAddress(addr)} }

// Client returns the subject of a client IP address.
func Client(addr netip.Addr) Subject { return Subject{KindClient, addr.Unmap().String()} }

// ParseSubject reads "account", "sender:addr" or "client:ip" as the admin CLI
// writes them: a bare word containing '@' is a sender, a bare IP address is a
// client, anything else an account; an explicit "acct:", "sender:" or
// "client:" prefix decides. Addresses are taken in the canonical form
// (identity): a sender as NormalizeAddress, an account named by an address
// as identity.CanonicalAccountName, so either IDNA spelling names one
// subject.
func ParseSubject(s string) (Subject, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Subject{}, fmt.Errorf("subject %q: empty", s)
	}
	if k, v, ok := strings.Cut(s, ":"); ok {
		switch SubjectKind(k) {
		case KindAccount:
			return Account(identity.CanonicalAccountName(v)), nil
		case KindSender:
			return Sender(v), nil
		case KindClient:
			a, err := netip.ParseAddr(v)
			if err != nil {
				return Subject{}, fmt.Errorf("subject %q: %q is not an IP address", s, v)
			}
			return Client(a), nil
		}
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return Client(a), nil
	}
	if strings.Contains(s, "@") {
		return Sender(s), nil
	}
	return Account(s), nil
}

// String writes the subject as ParseSubject reads it.
func (s Subject) String() string { return string(s.Kind) + ":" + s.Name }

// dimensions returns the limit dimensions counted for a subject kind.
func (k SubjectKind) dimensions() []Dimension {
	switch k {
	case KindAccount:
		return []Dimension{AccountMessages, AccountRecipients, AccountNewRecipients}
	case KindSender:
		return []Dimension{SenderMessages}
	case KindClient:
		return []Dimension{ClientMessages}
	}
	return nil
}

// logSuffix names the counter key of a dimension within a subject.
func (d Dimension) logSuffix() string {
	switch d {
	case AccountRecipients:
		return "rcpts"
	case AccountNewRecipients:
		return "newrcpts"
	}
	return "msgs"
}

// LimitStatus is the state of one limit window of a subject.
type LimitStatus struct {
	Dimension Dimension
	Rate      Rate
	Used      int64
	Remaining int64
	// FreesIn is when the oldest counted event leaves the window (zero when
	// nothing is counted).
	FreesIn time.Duration
	// Override is set when a runtime override replaced the configured rate.
	Override bool
}

// Override replaces the rates of one dimension for one subject until Until
// (zero: until removed).
type Override struct {
	Subject   Subject
	Dimension Dimension
	Rates     []Rate
	Until     time.Time
}

// Exemption exempts a subject from every limit (locks still apply).
type Exemption struct {
	Subject Subject
	Reason  string
	By      string
	At      time.Time
	Until   time.Time // zero: until removed
}

// AuditEntry records one admin action.
type AuditEntry struct {
	At      time.Time
	By      string
	Action  string
	Subject Subject
	Detail  string
}

// Status is everything known about one subject.
type Status struct {
	Subject      Subject
	Limits       []LimitStatus
	Strikes      int
	StrikeWindow time.Duration
	Lock         *Lock // accounts only; nil when not locked
	Overrides    []Override
	Exemption    *Exemption
	Audit        []AuditEntry // newest first
}

// TopBy says what Top ranks by.
type TopBy string

// The rankings of Top.
const (
	TopMessages   TopBy = "messages"
	TopRecipients TopBy = "recipients"
	TopStrikes    TopBy = "strikes"
)

// TopEntry is one ranked subject.
type TopEntry struct {
	Subject Subject
	Count   int64
}

// LockedAccount is one entry of Locked.
type LockedAccount struct {
	Account string
	Lock    Lock
}

// Admin is the administration API of a store, used by the admin CLI. Every
// key name and window computation stays inside the store. by is the OS user
// recorded in the audit log.
type Admin interface {
	Status(ctx context.Context, s Subject) (Status, error)
	// Top ranks subjects by their count within window (messages: accounts,
	// senders and clients; recipients and strikes: accounts).
	Top(ctx context.Context, by TopBy, window time.Duration, n int) ([]TopEntry, error)
	Locked(ctx context.Context) ([]LockedAccount, error)
	// Lock locks an account for d (0: until unlocked).
	Lock(ctx context.Context, account, reason, by string, d time.Duration) error
	Unlock(ctx context.Context, account, by string) error
	// Reset clears a subject's counters (of one dimension, or all when dim is
	// empty) and, for an account and an empty dim, its strikes.
	Reset(ctx context.Context, s Subject, dim Dimension, by string) error
	// SetOverride replaces the rates of a dimension for a subject for d (0:
	// until removed); nil rates remove the override.
	SetOverride(ctx context.Context, s Subject, dim Dimension, rates []Rate, d time.Duration, by string) error
	Exempt(ctx context.Context, s Subject, reason string, d time.Duration, by string) error
	Unexempt(ctx context.Context, s Subject, by string) error
	Exemptions(ctx context.Context) ([]Exemption, error)

	// The abuse desk (see desk.go).

	// Held lists the messages held within the retention, newest first, of
	// one account ("": of every account), whatever became of them since
	// (MessageRecord.Status: held, released, purged, ...).
	Held(ctx context.Context, account string) ([]MessageRecord, error)
	// ActOnHeld asks the instance that held each selected message to
	// release or purge it, and waits up to wait for the outcomes: one per
	// message, StatusPending where the instance did not answer in time,
	// StatusUnknown where no such held message is recorded, and the
	// message's status as it stands (with no request made) where it is no
	// longer held. by is recorded with the request and in the audit log.
	ActOnHeld(ctx context.Context, action DeskAction, sel HeldSelector, by string, wait time.Duration) ([]DeskOutcome, error)
	// DecisionRecord returns the record of a message by queue id or
	// Message-ID: a held or refused message's decision record, or an
	// accepted message's Message-ID record; false when none is kept.
	DecisionRecord(ctx context.Context, id string) (MessageRecord, bool, error)
	// AddComplaint records a complaint (attributed to c.Account, or
	// unattributed when that is empty), counts it against the account, adds
	// its strikes, locks the account at the complaint threshold, and raises
	// EventComplaint (and EventLock). by is recorded in the audit log.
	AddComplaint(ctx context.Context, c Complaint, by string) (ComplaintResult, error)
	// Complaints lists an account's complaints within the retention, newest
	// first; account "" lists the unattributed ones.
	Complaints(ctx context.Context, account string) ([]Complaint, error)

	// The console's history (see history.go).

	// SentPerHour returns the messages an account sent in each of the last
	// hours clock hours of the store's clock (1 to HistoryHours), oldest
	// first, the last being the current hour.
	SentPerHour(ctx context.Context, account string, hours int) ([]HourCount, error)
	// Decisions returns the decision records (held, deferred, rejected) of
	// an account's newest messages still kept ("": of every account), newest
	// first, at most limit (0 or more than the index keeps: all it keeps).
	Decisions(ctx context.Context, account string, limit int) ([]MessageRecord, error)
	// AuditLog returns a page of the audit log of every subject, newest
	// first.
	AuditLog(ctx context.Context, q AuditQuery) ([]AuditEntry, error)
}

// checkOverride validates an override request.
func checkOverride(s Subject, dim Dimension) error {
	for _, d := range s.Kind.dimensions() {
		if d == dim {
			return nil
		}
	}
	return fmt.Errorf("override of %q for %s: not a limit of a %s (want one of %v)", dim, s, s.Kind, s.Kind.dimensions())
}

// formatRates writes rates as the stores keep them: "LIMIT:WINDOW_US,...".
func formatRates(rates []Rate) string {
	var b strings.Builder
	for i, r := range rates {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%d:%d", r.Limit, r.Window.Microseconds())
	}
	return b.String()
}

// parseStoredRates reads formatRates output.
func parseStoredRates(s string) []Rate {
	var out []Rate
	for _, p := range strings.Split(s, ",") {
		var l, w int64
		if _, err := fmt.Sscanf(p, "%d:%d", &l, &w); err == nil {
			out = append(out, Rate{Limit: l, Window: time.Duration(w) * time.Microsecond})
		}
	}
	return out
}

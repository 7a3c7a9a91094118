package console

import (
	"context"
	"errors"
	"time"
)

// ErrUnavailable is what a Desk or History returns when the store of this
// version does not keep that data: the page says "not available with this
// version of the store" instead of failing.
var ErrUnavailable = errors.New("not available with this version of the store")

// Desk is the console's seam to the abuse desk's loop: held mail and its
// release and purge, complaints, and the record behind each refusal. The
// console renders its pages and runs its actions against this interface
// only; Unavailable stands in until a store provides it.
//
// by is the console user, recorded in the audit log as abusectl records
// the OS user. Every method may return ErrUnavailable.
type Desk interface {
	// Held lists held messages, newest first.
	Held(ctx context.Context, f HeldFilter) ([]HeldMessage, error)
	// HeldMessage returns one held message with its headers (ok false when
	// there is no such message).
	HeldMessage(ctx context.Context, id string) (m HeldMessage, ok bool, err error)
	// Release and Purge act on held messages and return one outcome per id.
	Release(ctx context.Context, ids []string, by string) ([]Outcome, error)
	Purge(ctx context.Context, ids []string, by string) ([]Outcome, error)
	// Complaints lists complaints received since f.Since, newest first.
	Complaints(ctx context.Context, f ComplaintFilter) ([]Complaint, error)
	// Refusals lists the decision records of refused (and held) messages
	// since f.Since, newest first.
	Refusals(ctx context.Context, f RefusalFilter) ([]Refusal, error)
}

// History gives an account's sending per hour, for the account page's
// 24-hour chart.
type History interface {
	// SentPerHour returns the messages the account sent in each of the
	// last hours clock hours, oldest first, the last being the hour now is
	// in (len hours).
	SentPerHour(ctx context.Context, account string, hours int, now time.Time) ([]int64, error)
}

// HeldFilter selects held messages; empty fields match every message.
type HeldFilter struct {
	Account string
	Rule    string
	Limit   int // 0: no limit
}

// HeldMessage is one message on hold for review.
type HeldMessage struct {
	ID         string // the store's ID of the record (queue ID and instance)
	QueueID    string
	Instance   string
	Account    string
	Login      string
	Client     string
	Sender     string
	Recipients int
	From       string
	Subject    string
	MessageID  string
	Findings   []Finding
	At         time.Time
	// Headers are the message's header fields as held (HeldMessage only).
	Headers []Header
}

// Finding is one rule that fired, with its reason.
type Finding struct {
	Rule   string
	Reason string
}

// Header is one header field.
type Header struct {
	Name  string
	Value string
}

// Outcome is the result of a release or purge of one held message.
type Outcome struct {
	ID string
	OK bool
	// Detail is what happened ("released", "no longer on the hold queue",
	// the command's error ...).
	Detail string
}

// ComplaintFilter selects complaints.
type ComplaintFilter struct {
	// Attributed: complaints attributed to an account; otherwise the
	// unattributed ones.
	Attributed bool
	Account    string // only with Attributed; empty: every account
	Since      time.Time
	Limit      int
}

// Complaint is one complaint received.
type Complaint struct {
	ID           string
	At           time.Time
	Account      string // empty when unattributed
	FeedbackType string // abuse, fraud, virus, other, dsn ...
	Reporter     string
	MessageID    string
	Subject      string
	Detail       string
}

// RefusalFilter selects decision records.
type RefusalFilter struct {
	Account string // empty: every account
	Since   time.Time
	Limit   int
}

// Refusal is the record behind one refused or held message.
type Refusal struct {
	At        time.Time
	Account   string
	QueueID   string
	MessageID string // without angle brackets
	Action    string // defer, reject, hold
	Rule      string // the rule that decided (its clause when none is named)
	Clause    string // the policy clause that decided
	Reason    string // the reply sent
	Findings  []Finding
}

// Unavailable is the Desk and History of a store that has none: every
// method returns ErrUnavailable.
type Unavailable struct{}

func (Unavailable) Held(context.Context, HeldFilter) ([]HeldMessage, error) {
	return nil, ErrUnavailable
}

func (Unavailable) HeldMessage(context.Context, string) (HeldMessage, bool, error) {
	return HeldMessage{}, false, ErrUnavailable
}

func (Unavailable) Release(context.Context, []string, string) ([]Outcome, error) {
	return nil, ErrUnavailable
}

func (Unavailable) Purge(context.Context, []string, string) ([]Outcome, error) {
	return nil, ErrUnavailable
}

func (Unavailable) Complaints(context.Context, ComplaintFilter) ([]Complaint, error) {
	return nil, ErrUnavailable
}

func (Unavailable) Refusals(context.Context, RefusalFilter) ([]Refusal, error) {
	return nil, ErrUnavailable
}

func (Unavailable) SentPerHour(context.Context, string, int, time.Time) ([]int64, error) {
	return nil, ErrUnavailable
}

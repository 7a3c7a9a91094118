// Package notify tells the outside world about operational events: an
// account locked or unlocked, an account passing a share of one of its
// limits, the rate store entering or leaving its fail mode.
//
// Events go to three kinds of sinks, each with a bounded queue and its own
// workers: webhooks (a JSON POST with a per-attempt timeout, retries with
// exponential backoff and an optional bearer token), a command run on lock
// (no shell, a timeout, bounded concurrency) and an append-only audit log of
// JSON lines. Publish never blocks and never does I/O: it sits next to the
// mail decision path, so an event that finds a queue full is dropped and
// counted, never waited for. The JSON schema is documented in
// docs/operations.md.
package notify

import (
	"crypto/rand"
	"encoding/hex"
	"time"
)

// SchemaVersion is the "version" field of every event; it changes only
// when a field changes meaning or disappears (new fields may be added).
const SchemaVersion = 1

// Kind names an event type; it is the "event" field of the JSON.
type Kind string

// The event kinds.
const (
	// AccountLocked: an account was locked (after repeated refusals, or by
	// an admin); its mail is deferred or rejected until Until or an unlock.
	AccountLocked Kind = "account_locked"
	// AccountWouldLock: monitor mode; the account reached the strike
	// threshold and would have been locked in enforce mode.
	AccountWouldLock Kind = "account_would_lock"
	// AccountUnlocked: a lock was lifted.
	AccountUnlocked Kind = "account_unlocked"
	// LimitThreshold: the use of a limit passed the configured share
	// (notify.threshold) of it.
	LimitThreshold Kind = "limit_threshold"
	// FailModeEntered: the rate store stopped answering and the fail mode
	// (accept or defer) decides without it.
	FailModeEntered Kind = "fail_mode_entered"
	// FailModeLeft: the rate store answers again.
	FailModeLeft Kind = "fail_mode_left"
	// MessageHeld: a message was put on hold for the abuse desk (QueueID,
	// Instance, Rule, Reason).
	MessageHeld Kind = "message_held"
	// MessageReleased and MessagePurged: the desk released or purged a
	// held message (By; Status is the outcome: released, purged, not-held
	// when it had already left the hold queue, failed).
	MessageReleased Kind = "message_released"
	MessagePurged   Kind = "message_purged"
	// Complaint: a complaint about a message was recorded (Account empty
	// when it could not be attributed; Complaints is the account's count
	// within the complaint window). A lock it causes is an AccountLocked
	// with rule ACCOUNT_COMPLAINTS (or strikes).
	Complaint Kind = "complaint"
)

// Event is one notification. Publish fills Version, ID, Time and Host when
// they are empty. Fields that do not apply to a kind are left out of the
// JSON.
type Event struct {
	Version int       `json:"version"`
	ID      string    `json:"id"` // random, unique: receivers de-duplicate retries with it
	Kind    Kind      `json:"event"`
	Time    time.Time `json:"time"`
	Host    string    `json:"host"` // the milter host that saw the event

	// Account events.
	Account string    `json:"account,omitempty"`
	Reason  string    `json:"reason,omitempty"`  // human reason, e.g. "10 refusals within 1h"
	Rule    string    `json:"rule,omitempty"`    // rule ID behind the event, e.g. ACCOUNT_MSG_RATE
	By      string    `json:"by,omitempty"`      // "auto", "expiry" or the admin's name
	Until   time.Time `json:"until,omitzero"`    // end of a lock; absent: until unlocked
	Strikes int       `json:"strikes,omitempty"` // refusals in the strike window behind an automatic lock

	// LimitThreshold.
	Dimension string  `json:"dimension,omitempty"` // e.g. account_messages
	KeyKind   string  `json:"key_kind,omitempty"`  // "account", "sender" or "client"
	Key       string  `json:"key,omitempty"`       // counted subject: account name, sender address or client IP
	Used      int64   `json:"used,omitempty"`
	Limit     int64   `json:"limit,omitempty"`
	Window    string  `json:"window,omitempty"` // e.g. "1h"
	Share     float64 `json:"share,omitempty"`  // the configured threshold, e.g. 0.8

	// Fail mode events.
	FailMode string `json:"fail_mode,omitempty"` // "accept" or "defer"
	Error    string `json:"error,omitempty"`     // why the store failed

	// Abuse desk events.
	QueueID      string `json:"queue_id,omitempty"`
	MessageID    string `json:"message_id,omitempty"`
	Instance     string `json:"instance,omitempty"`      // the MTA host holding the message
	Status       string `json:"status,omitempty"`        // a release's or purge's outcome
	FeedbackType string `json:"feedback_type,omitempty"` // abuse, fraud, virus, other, dsn, forwarded
	Complaints   int    `json:"complaints,omitempty"`    // the account's complaints within the window
}

// newID returns 16 random bytes in hex.
func newID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand panics rather than return an error)
	return hex.EncodeToString(b[:])
}

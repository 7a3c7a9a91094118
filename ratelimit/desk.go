package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// The abuse desk's records live in the store beside the counters, so that
// every milter host, abusectl and the console see the same ones:
//
//   - The Message-ID record of every accepted message (account, queue id,
//     instance, time, findings, the usage of every limit at that moment),
//     written inside the one check-and-charge call (Request.Record), kept
//     for DeskPolicy.AttributionRetention: a complaint about the message
//     finds its account through it.
//   - The decision record of every message held or refused at end of
//     message, by queue id and by Message-ID, with the verdict and the
//     account's state (Recorder.RecordDecision: one more call), kept for
//     DeskPolicy.Retention. A held message is also in the held index, and
//     its record carries its state: held, released, purged, ...
//   - Release and purge requests: ActOnHeld queues a request for the
//     instance that held the message (MessageRecord.Instance); that
//     instance's executor takes it (DeskQueue.NextDeskRequests), runs the
//     configured command on its own host and reports the outcome
//     (DeskQueue.CompleteDeskRequest), which ActOnHeld waits for.
//   - Complaints, per account (and a list of unattributed ones), with their
//     own counter within DeskPolicy.ComplaintWindow, a strike weight, and a
//     lock at DeskPolicy.ComplaintThreshold.
//
// Both stores implement all of it: the admin side in Admin, the milter's
// side in Recorder and DeskQueue.

// DeskPolicy configures the abuse desk's records.
type DeskPolicy struct {
	// Retention keeps held and refused messages' records, and complaints
	// (default 7 days).
	Retention time.Duration
	// AttributionRetention keeps the Message-ID record of accepted mail
	// (default 7 days; negative: no such records).
	AttributionRetention time.Duration
	// ComplaintWindow is the window complaints are counted in (default 7
	// days); ComplaintThreshold complaints within it lock the account (0:
	// never). Each complaint also adds ComplaintStrikeWeight strikes (0:
	// none).
	ComplaintWindow       time.Duration
	ComplaintThreshold    int
	ComplaintStrikeWeight int
}

const defaultDeskRetention = 7 * 24 * time.Hour

func (p DeskPolicy) retention() time.Duration {
	if p.Retention <= 0 {
		return defaultDeskRetention
	}
	return p.Retention
}

func (p DeskPolicy) attributionRetention() time.Duration {
	if p.AttributionRetention == 0 {
		return defaultDeskRetention
	}
	return max(0, p.AttributionRetention)
}

func (p DeskPolicy) complaintWindow() time.Duration {
	if p.ComplaintWindow <= 0 {
		return defaultDeskRetention
	}
	return p.ComplaintWindow
}

// complaintKeep is how long complaints stay listed: the longer of the
// retention and the counting window.
func (p DeskPolicy) complaintKeep() time.Duration {
	return max(p.retention(), p.complaintWindow())
}

// RuleComplaints is the rule ID of a lock by complaints.
const RuleComplaints = "ACCOUNT_COMPLAINTS"

// RecordFinding is one rule that fired, as a record keeps it.
type RecordFinding struct {
	Rule   string  `json:"rule"`
	Clause string  `json:"clause,omitempty"`
	Score  float64 `json:"score"`
	Reason string  `json:"reason,omitempty"`
}

// HeldStatus is where a held message stands.
type HeldStatus string

// The states of a held message, and the outcomes of a request.
const (
	StatusHeld     HeldStatus = "held"     // on hold, waiting for the desk
	StatusReleased HeldStatus = "released" // released from hold: on its way
	StatusPurged   HeldStatus = "purged"   // deleted from the queue
	// StatusNotHeld: the command found the message no longer on hold (it
	// was released or deleted by hand on the MTA host).
	StatusNotHeld HeldStatus = "not-held"
	StatusFailed  HeldStatus = "failed"  // the command failed; still held
	StatusPending HeldStatus = "pending" // no outcome within the wait
	StatusUnknown HeldStatus = "unknown" // no such held message
)

// MessageRecord is the store's record of one message: who sent it, what
// was decided and why, and the account's state at that moment. Fields the
// store fills are marked so.
type MessageRecord struct {
	QueueID      string `json:"queue_id,omitempty"`
	MessageID    string `json:"message_id,omitempty"` // without angle brackets
	Instance     string `json:"instance,omitempty"`   // the MTA host (store's Options.Instance)
	Account      string `json:"account"`
	IdentifiedBy string `json:"identified_by,omitempty"`
	Login        string `json:"login,omitempty"`
	Client       string `json:"client,omitempty"`
	Sender       string `json:"sender"`
	Recipients   int    `json:"recipients"`
	From         string `json:"from,omitempty"`    // header From
	Subject      string `json:"subject,omitempty"` // header Subject
	// The decision: stage ("eom"), action ("accept", "hold", "defer",
	// "reject"), whether monitor mode only reported it, the deciding rule,
	// the reply sent.
	Stage        string          `json:"stage,omitempty"`
	Action       string          `json:"action,omitempty"`
	Monitor      bool            `json:"monitor,omitempty"`
	Rule         string          `json:"rule,omitempty"`
	Clause       string          `json:"clause,omitempty"`
	Reply        string          `json:"reply,omitempty"`
	Score        float64         `json:"score,omitempty"`
	Findings     []RecordFinding `json:"findings,omitempty"`
	LimiterError string          `json:"limiter_error,omitempty"`
	// The limits at that moment: every window charged (Usage), or the one
	// that refused (Exceeded, RetryAfter); the account's strikes and lock.
	Usage      []Usage       `json:"-"`
	Exceeded   *Usage        `json:"-"`
	RetryAfter time.Duration `json:"-"`
	Strikes    int           `json:"strikes,omitempty"`
	Locked     bool          `json:"locked,omitempty"`
	LockReason string        `json:"lock_reason,omitempty"`
	// At is when the store recorded it (store's clock).
	At time.Time `json:"-"`

	// Held is set for a message held for the desk; Status and the fields
	// after it say what became of it.
	Held         bool       `json:"held,omitempty"`
	Status       HeldStatus `json:"status,omitempty"`
	StatusBy     string     `json:"status_by,omitempty"`
	StatusAt     time.Time  `json:"-"`
	StatusDetail string     `json:"status_detail,omitempty"`
}

// storedRecord is a MessageRecord as the stores keep it (JSON).
type storedRecord struct {
	MessageRecord
	AtUS       int64   `json:"at_us,omitempty"`
	StatusAtUS int64   `json:"status_at_us,omitempty"`
	RetryUS    int64   `json:"retry_us,omitempty"`
	U          [][]any `json:"u,omitempty"` // usage: kind, dim, limit, window_us, used
	X          []any   `json:"x,omitempty"` // exceeded, the same
}

// usageRow writes a Usage as the script writes it: kind, dimension (as a
// counter key names it), limit, window in microseconds, used.
func usageRow(u Usage) []any {
	kind := "a"
	switch u.Dimension {
	case SenderMessages:
		kind = "s"
	case ClientMessages:
		kind = "c"
	}
	return []any{kind, u.Dimension.logSuffix(), u.Rate.Limit, u.Rate.Window.Microseconds(), u.Used}
}

// usageOfRow reads usageRow (or the script's) output; key names the
// counted subject from the record.
func usageOfRow(row []any, rec *MessageRecord) (Usage, bool) {
	if len(row) != 5 {
		return Usage{}, false
	}
	kind, _ := row[0].(string)
	dim, _ := row[1].(string)
	num := func(v any) int64 { f, _ := v.(float64); return int64(f) }
	var k SubjectKind
	key := rec.Account
	switch kind {
	case "s":
		k, key = KindSender, Sender(rec.Sender).Name
	case "c":
		k, key = KindClient, rec.Client
	default:
		k = KindAccount
	}
	d, ok := scriptDims[dim]
	if !ok {
		return Usage{}, false
	}
	return Usage{Dimension: dimensionOf(k, d), Key: key,
		Rate: Rate{Limit: num(row[2]), Window: time.Duration(num(row[3])) * time.Microsecond}, Used: num(row[4])}, true
}

// encodeRecord writes a record as the stores keep it.
func encodeRecord(rec MessageRecord) []byte {
	s := storedRecord{MessageRecord: rec, RetryUS: rec.RetryAfter.Microseconds()}
	if !rec.At.IsZero() {
		s.AtUS = rec.At.UnixMicro()
	}
	if !rec.StatusAt.IsZero() {
		s.StatusAtUS = rec.StatusAt.UnixMicro()
	}
	for _, u := range rec.Usage {
		s.U = append(s.U, usageRow(u))
	}
	if rec.Exceeded != nil {
		s.X = usageRow(*rec.Exceeded)
	}
	b, _ := json.Marshal(s)
	return b
}

// attributionRecord is what the Message-ID record of an accepted message
// keeps (it is written for every message, so it is kept small): the
// account, queue id, instance and sender, the rules that fired; the store
// adds the time and the usage. The Message-ID is the key.
func attributionRecord(rec MessageRecord, instance string) MessageRecord {
	return MessageRecord{QueueID: rec.QueueID, Instance: instance, Account: rec.Account, Sender: rec.Sender,
		Recipients: rec.Recipients, Action: "accept", Score: rec.Score, Findings: rec.Findings}
}

// recordPrefix is encodeRecord's output without its closing brace, for the
// script to complete with the time and usage it knows.
func recordPrefix(rec MessageRecord) string {
	rec.At, rec.Usage = time.Time{}, nil
	b := encodeRecord(rec)
	return string(b[:len(b)-1])
}

// decodeRecord reads encodeRecord's (or the script's) output.
func decodeRecord(b []byte) (MessageRecord, error) {
	var s storedRecord
	if err := json.Unmarshal(b, &s); err != nil {
		return MessageRecord{}, fmt.Errorf("bad message record: %w", err)
	}
	rec := s.MessageRecord
	rec.At = timeOrZero(s.AtUS)
	rec.StatusAt = timeOrZero(s.StatusAtUS)
	rec.RetryAfter = time.Duration(s.RetryUS) * time.Microsecond
	for _, row := range s.U {
		if u, ok := usageOfRow(row, &rec); ok {
			rec.Usage = append(rec.Usage, u)
		}
	}
	if u, ok := usageOfRow(s.X, &rec); ok {
		rec.Exceeded = &u
	}
	return rec, nil
}

// NormalizeMessageID returns a Message-ID as records are keyed by it:
// surrounding white space and one pair of angle brackets removed.
func NormalizeMessageID(s string) string {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "<") {
		if i := strings.IndexByte(s, '>'); i > 0 {
			s = s[1:i]
		}
	}
	return strings.TrimSpace(s)
}

// maxKeyID bounds a Message-ID used in a key as it is; a longer one (or one
// with spaces or control characters) is keyed by its SHA-256.
const maxKeyID = 200

// idKey returns the key part naming a Message-ID or queue id.
func idKey(id string) string {
	if len(id) <= maxKeyID && !strings.ContainsFunc(id, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Recorder is the milter's side of the desk's records: the decision record
// of a message held or refused at end of message (rec.Held: also listed as
// held). The store stamps its instance and its clock. One round trip.
type Recorder interface {
	RecordDecision(ctx context.Context, rec MessageRecord) error
}

// DeskAction is what the desk asks of a held message.
type DeskAction string

// The desk's actions on held messages.
const (
	Release DeskAction = "release"
	Purge   DeskAction = "purge"
)

// DeskRequest is one release or purge request on its way to the instance
// that held the message.
type DeskRequest struct {
	ID       string     `json:"id"`
	Action   DeskAction `json:"action"`
	QueueID  string     `json:"queue_id"`
	Instance string     `json:"instance"`
	Account  string     `json:"account"`
	By       string     `json:"by"`
	At       time.Time  `json:"at"`
}

// DeskOutcome is what became of a request: the held message's new status
// (StatusPending when the instance did not answer within the wait,
// StatusUnknown when no such held message is recorded) and, from the
// instance, the command's output.
type DeskOutcome struct {
	Request DeskRequest `json:"request"`
	Status  HeldStatus  `json:"status"`
	Detail  string      `json:"detail,omitempty"`
	At      time.Time   `json:"at"`
}

// HeldSelector names held messages: by queue id, or every message held
// for an account.
type HeldSelector struct {
	QueueIDs []string
	Account  string
}

// DeskQueue is the milter's side of release and purge requests: the
// requests for this store's instance (Options.Instance), and their
// outcomes.
type DeskQueue interface {
	// NextDeskRequests returns the requests waiting for this instance,
	// waiting up to wait for one to come (less when ctx ends).
	NextDeskRequests(ctx context.Context, wait time.Duration) ([]DeskRequest, error)
	// CompleteDeskRequest records the outcome on the held message's record
	// and in the account's audit log, and hands it to the waiting ActOnHeld.
	CompleteDeskRequest(ctx context.Context, o DeskOutcome) error
}

// Complaint is one complaint about a message: a feedback-loop report, a
// bounce or a forwarded spam.
type Complaint struct {
	// ID identifies the complaint (the same report read twice has the same
	// ID and counts once).
	ID string `json:"id"`
	// Account is the account it was attributed to; "" when it could not
	// be (Reason says why).
	Account string `json:"account,omitempty"`
	// AttributedBy says how: "message-id" or "tracking-header".
	AttributedBy string `json:"attributed_by,omitempty"`
	Reason       string `json:"reason,omitempty"`
	// Type is the feedback type (abuse, fraud, virus, other), "dsn" or
	// "forwarded".
	Type      string `json:"type"`
	Reporter  string `json:"reporter,omitempty"` // the report's From
	MessageID string `json:"message_id,omitempty"`
	QueueID   string `json:"queue_id,omitempty"`
	Instance  string `json:"instance,omitempty"`
	Subject   string `json:"subject,omitempty"` // the original's
	// At is when the store recorded it.
	At time.Time `json:"-"`
	// AtUS is At as stored.
	AtUS int64 `json:"at_us,omitempty"`
}

// ComplaintResult is what AddComplaint did.
type ComplaintResult struct {
	Complaint Complaint
	// Duplicate: this complaint was recorded before; nothing was counted.
	Duplicate bool
	// Complaints is the account's count within the complaint window,
	// Strikes its strikes now.
	Complaints int
	Strikes    int
	// Locked is set when the account is locked now; NewlyLocked when this
	// complaint locked it (by complaints or by strikes), Lock says why.
	Locked, NewlyLocked, WouldLock bool
	Lock                           *Lock
}

func newRequestID() string { return newCallID() + newCallID() }

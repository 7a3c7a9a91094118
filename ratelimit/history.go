package ratelimit

import (
	"fmt"
	"strings"
	"time"
)

// The console's history, kept by both stores beside the counters:
//
//   - Sent per hour: every message an account sends (allowed by the
//     check-and-charge call, exempt ones included) is counted in the clock
//     hour of the store's clock; the last HistoryHours hours are kept. On
//     Redis it is one HINCRBY inside the check-and-charge script (see
//     script.lua); an hour's first message also drops the hours that left
//     the history and sets the key's TTL.
//   - Recent decisions: the queue ids of the decision records
//     (RecordDecision: held, deferred and rejected messages) of each
//     account, the newest DecisionsPerAccount, and of every account, the
//     newest DecisionsRecent, written in RecordDecision's one call. The
//     records themselves expire with DeskPolicy.Retention; an index entry
//     whose record is gone is skipped.
//   - The audit log: every audit entry of every subject, newest first, the
//     newest AuditLogKeep, written with the subject's own entry (on Redis
//     Cluster, where the log has a slot of its own, right after it).

// HistoryHours is how many clock hours of an account's sending the stores
// keep (SentPerHour).
const HistoryHours = 48

// DecisionsPerAccount and DecisionsRecent bound the indexes of recent
// decision records: per account and of every account.
const (
	DecisionsPerAccount = 50
	DecisionsRecent     = 2000
)

// AuditLogKeep bounds the audit log of every subject (AuditLog).
const AuditLogKeep = 10000

const hourUS = int64(time.Hour / time.Microsecond)

// HourCount is what an account sent in one clock hour.
type HourCount struct {
	Start time.Time // the start of the hour (store's clock)
	Sent  int64
}

// hourSeries returns the last hours clock hours up to the one holding
// nowUS, oldest first, from counts by hour index (microseconds / hourUS).
func hourSeries(counts map[int64]int64, nowUS int64, hours int) []HourCount {
	cur := bucketOf(nowUS, hourUS)
	out := make([]HourCount, hours)
	for i := range out {
		h := cur - int64(hours-1-i)
		out[i] = HourCount{Start: usToTime(h * hourUS), Sent: counts[h]}
	}
	return out
}

// checkHours validates the hours asked of SentPerHour.
func checkHours(account string, hours int) error {
	if hours < 1 || hours > HistoryHours {
		return fmt.Errorf("sending history of %q: %d hours asked, want 1 to %d", account, hours, HistoryHours)
	}
	return nil
}

// AuditQuery selects a page of the audit log (AuditLog): entries by Actor
// (the user recorded, exactly) and of Subject (its Kind empty: any), newest
// first, Offset matching entries skipped, at most Limit returned (0: 100).
type AuditQuery struct {
	Actor   string
	Subject Subject
	Offset  int
	Limit   int
}

func (q AuditQuery) limit() int {
	if q.Limit <= 0 {
		return 100
	}
	return q.Limit
}

func (q AuditQuery) matches(e AuditEntry) bool {
	return (q.Actor == "" || e.By == q.Actor) && (q.Subject.Kind == "" || e.Subject == q.Subject)
}

// page applies q to entries read newest first from the log, a batch at a
// time: it returns the entries to add to out, and whether out is full.
func (q AuditQuery) page(out []AuditEntry, skipped *int, batch []AuditEntry) ([]AuditEntry, bool) {
	for _, e := range batch {
		if !q.matches(e) {
			continue
		}
		if *skipped < q.Offset {
			*skipped++
			continue
		}
		out = append(out, e)
		if len(out) == q.limit() {
			return out, true
		}
	}
	return out, false
}

// auditSubject reads the subject of a stored audit entry
// (Subject.String); an unreadable one is an account named so.
func auditSubject(s string) Subject {
	k, v, ok := strings.Cut(s, ":")
	switch SubjectKind(k) {
	case KindAccount, KindSender, KindClient:
		if ok {
			return Subject{SubjectKind(k), v}
		}
	}
	return Account(s)
}

package ratelimit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// The console's history in Redis (history.go; key layout in Redis): the
// account's :sent hash, written by the check-and-charge script, the
// :decisions lists, written by RecordDecision, and the audit log
// PREFIX{audit}:log.

func (r *Redis) sentKey(account string) string { return r.base(Account(account)) + ":sent" }
func (r *Redis) decisionsKey(account string) string {
	return r.base(Account(account)) + ":decisions"
}
func (r *Redis) recentDecisions() string { return r.prefix + "decisions" }
func (r *Redis) auditLogKey() string     { return r.prefix + "{audit}:log" }

// refundSent adds to a refund (refundArgs) the message a Cluster call
// counted in the account's sending history, for a message refused by
// another subject's call.
func (r *Redis) refundSent(keys []string, args []any, s Subject, rep reply) ([]string, []any) {
	if s.Kind != KindAccount {
		return keys, args
	}
	return append(keys, r.sentKey(s.Name)), append(args, formatInt(bucketOf(rep.now.UnixMicro(), hourUS)), 1)
}

// indexDecision queues on pipe the queue id of a decision record in the
// indexes of recent decisions (the account's and every account's).
func (r *Redis) indexDecision(ctx context.Context, pipe redis.Pipeliner, rec MessageRecord) {
	if rec.QueueID == "" {
		return
	}
	ttl := r.policy.Desk.retention()
	for _, ix := range []struct {
		key  string
		keep int64
	}{{r.decisionsKey(rec.Account), DecisionsPerAccount}, {r.recentDecisions(), DecisionsRecent}} {
		pipe.LPush(ctx, ix.key, rec.QueueID)
		pipe.LTrim(ctx, ix.key, 0, ix.keep-1)
		pipe.PExpire(ctx, ix.key, ttl)
	}
}

// SentPerHour implements Admin.
func (r *Redis) SentPerHour(ctx context.Context, account string, hours int) ([]HourCount, error) {
	if err := checkHours(account, hours); err != nil {
		return nil, err
	}
	ctx, cancel := adminCtx(ctx)
	defer cancel()
	now, err := r.serverNow(ctx)
	if err != nil {
		return nil, fmt.Errorf("sending history of %q: %w", account, err)
	}
	fields, err := r.client.HGetAll(ctx, r.sentKey(account)).Result()
	if err != nil {
		return nil, fmt.Errorf("sending history of %q: %w", account, err)
	}
	counts := make(map[int64]int64, len(fields))
	for f, v := range fields {
		h, err1 := strconv.ParseInt(f, 10, 64)
		n, err2 := strconv.ParseInt(v, 10, 64)
		if err1 == nil && err2 == nil {
			counts[h] = n
		}
	}
	return hourSeries(counts, now.UnixMicro(), hours), nil
}

// Decisions implements Admin.
func (r *Redis) Decisions(ctx context.Context, account string, limit int) ([]MessageRecord, error) {
	ctx, cancel := adminCtx(ctx)
	defer cancel()
	key, keep := r.recentDecisions(), DecisionsRecent
	if account != "" {
		key, keep = r.decisionsKey(account), DecisionsPerAccount
	}
	if limit <= 0 || limit > keep {
		limit = keep
	}
	ids, err := r.client.LRange(ctx, key, 0, int64(keep)-1).Result()
	if err != nil {
		return nil, fmt.Errorf("recent decisions of %q: %w", account, err)
	}
	recs, err := r.getRecords(ctx, dedupe(ids))
	if err != nil {
		return nil, fmt.Errorf("recent decisions of %q: %w", account, err)
	}
	return newestDecisions(recs, account, limit), nil
}

// newestDecisions keeps the records of account ("": any), newest first,
// at most limit.
func newestDecisions(recs []MessageRecord, account string, limit int) []MessageRecord {
	out := recs[:0]
	for _, rec := range recs {
		if account == "" || rec.Account == account {
			out = append(out, rec)
		}
	}
	sortRecords(out)
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

// pushAuditLog queues entries (storedAudit JSON) on pipe for the audit log.
func (r *Redis) pushAuditLog(ctx context.Context, pipe redis.Pipeliner, entries ...[]byte) {
	if len(entries) == 0 {
		return
	}
	key := r.auditLogKey()
	for _, b := range entries {
		pipe.LPush(ctx, key, b)
	}
	pipe.LTrim(ctx, key, 0, AuditLogKeep-1)
	pipe.PExpire(ctx, key, openLockTTL)
}

// logAudit appends entries to the audit log in a call of their own: on
// Cluster, after a transaction that could not hold them.
func (r *Redis) logAudit(ctx context.Context, what string, entries ...[]byte) error {
	if len(entries) == 0 {
		return nil
	}
	pipe := r.client.Pipeline()
	r.pushAuditLog(ctx, pipe, entries...)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("%s: saved, but not written to the audit log: %w", what, err)
	}
	return nil
}

// auditBatch is how many audit log entries AuditLog reads at a time.
const auditBatch = 500

// AuditLog implements Admin.
func (r *Redis) AuditLog(ctx context.Context, q AuditQuery) ([]AuditEntry, error) {
	ctx, cancel := adminCtx(ctx)
	defer cancel()
	var out []AuditEntry
	skipped := 0
	for start := int64(0); start < AuditLogKeep; start += auditBatch {
		vals, err := r.client.LRange(ctx, r.auditLogKey(), start, start+auditBatch-1).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("audit log: %w", err)
		}
		batch := make([]AuditEntry, 0, len(vals))
		for _, v := range vals {
			var a storedAudit
			if json.Unmarshal([]byte(v), &a) == nil {
				batch = append(batch, a.entry(auditSubject(a.Subject)))
			}
		}
		var full bool
		if out, full = q.page(out, &skipped, batch); full || len(vals) < auditBatch {
			break
		}
	}
	return out, nil
}

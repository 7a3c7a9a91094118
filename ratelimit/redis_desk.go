package ratelimit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The desk's keys in Redis (see desk.go), beside the counters:
//
//   - PREFIX mid:ID and PREFIX qid:ID, strings: a message's record (JSON) by
//     Message-ID and by queue id (an ID longer than 200 bytes, or with
//     spaces, is written sha256:HEX), expiring with the retention.
//   - PREFIX held and PREFIX{acct:name}:held, sorted sets: the queue ids of
//     held messages scored by when they were held (microseconds).
//   - PREFIX desk:INSTANCE, a list: the release and purge requests waiting
//     for that instance (JSON); a request is announced on the admin channel
//     as "desk:INSTANCE". PREFIX desk:done:ID, a string: a request's outcome,
//     for ten minutes.
//   - PREFIX{acct:name}:complaints (sorted set of complaint IDs by time) and
//     :complaint (hash of ID to JSON); PREFIX{complaints}:unattributed and
//     {complaints}:unattributed:data, the same for unattributed complaints.

// deskOutcomeTTL keeps an outcome for a caller that gave up waiting.
const deskOutcomeTTL = 10 * time.Minute

// deskPoll is how often an instance looks for requests when no
// announcement woke it, and how often ActOnHeld looks for outcomes.
const (
	deskPoll        = 2 * time.Second
	deskOutcomePoll = 100 * time.Millisecond
)

func (r *Redis) midKey(id string) string  { return r.prefix + "mid:" + idKey(id) }
func (r *Redis) qidKey(id string) string  { return r.prefix + "qid:" + idKey(id) }
func (r *Redis) heldIndex() string        { return r.prefix + "held" }
func (r *Redis) deskList(i string) string { return r.prefix + "desk:" + i }
func (r *Redis) deskDone(id string) string {
	return r.prefix + "desk:done:" + id
}

// attribution returns the Message-ID record a request asks to keep, its key
// and its TTL.
func (r *Redis) attribution(req Request) (string, MessageRecord, time.Duration, bool) {
	ttl := r.policy.Desk.attributionRetention()
	if req.Record == nil || req.Outcome != Charge || ttl <= 0 {
		return "", MessageRecord{}, 0, false
	}
	id := NormalizeMessageID(req.Record.MessageID)
	if id == "" {
		return "", MessageRecord{}, 0, false
	}
	return r.midKey(id), attributionRecord(*req.Record, r.opts.Instance), ttl, true
}

// RecordDecision implements Recorder: one pipeline.
func (r *Redis) RecordDecision(ctx context.Context, rec MessageRecord) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	rec.Instance = r.opts.Instance
	rec.At = time.Now().Add(r.opts.offset())
	rec.MessageID = NormalizeMessageID(rec.MessageID)
	if rec.Held {
		rec.Status = StatusHeld
	}
	ttl := r.policy.Desk.retention()
	b := encodeRecord(rec)
	pipe := r.client.Pipeline()
	if rec.QueueID != "" {
		pipe.Set(ctx, r.qidKey(rec.QueueID), b, ttl)
	}
	if rec.MessageID != "" {
		pipe.Set(ctx, r.midKey(rec.MessageID), b, ttl)
	}
	r.indexDecision(ctx, pipe, rec)
	if rec.Held && rec.QueueID != "" {
		at := float64(rec.At.UnixMicro())
		old := formatInt(rec.At.Add(-ttl).UnixMicro())
		for _, k := range []string{r.heldIndex(), r.base(Account(rec.Account)) + ":held"} {
			pipe.ZAdd(ctx, k, redis.Z{Score: at, Member: rec.QueueID})
			pipe.ZRemRangeByScore(ctx, k, "-inf", old)
			pipe.PExpire(ctx, k, ttl)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("record of queue id %q: %w: %w", rec.QueueID, ErrUnavailable, err)
	}
	if rec.Held {
		r.events.emit(Event{Kind: EventHeld, Subject: Account(rec.Account), Record: &rec, At: rec.At})
	}
	return nil
}

// getRecords reads the records of queue ids (missing ones are left out).
func (r *Redis) getRecords(ctx context.Context, ids []string) ([]MessageRecord, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	pipe := r.client.Pipeline()
	cmds := make([]*redis.StringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.Get(ctx, r.qidKey(id))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	var out []MessageRecord
	for _, c := range cmds {
		b, err := c.Bytes()
		if err != nil {
			continue
		}
		if rec, err := decodeRecord(b); err == nil {
			out = append(out, rec)
		}
	}
	return out, nil
}

// heldIDs returns the queue ids in a held index within the retention.
func (r *Redis) heldIDs(ctx context.Context, account string) ([]string, error) {
	key := r.heldIndex()
	if account != "" {
		key = r.base(Account(account)) + ":held"
	}
	from := time.Now().Add(r.opts.offset()).Add(-r.policy.Desk.retention()).UnixMicro()
	return r.client.ZRevRangeByScore(ctx, key, &redis.ZRangeBy{Min: "(" + formatInt(from), Max: "+inf"}).Result()
}

// Held implements Admin.
func (r *Redis) Held(ctx context.Context, account string) ([]MessageRecord, error) {
	ctx, cancel := adminCtx(ctx)
	defer cancel()
	ids, err := r.heldIDs(ctx, account)
	if err != nil {
		return nil, fmt.Errorf("held messages: %w", err)
	}
	recs, err := r.getRecords(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("held messages: %w", err)
	}
	out := recs[:0]
	for _, rec := range recs {
		if rec.Held && (account == "" || rec.Account == account) {
			out = append(out, rec)
		}
	}
	sortRecords(out)
	return out, nil
}

// sortRecords sorts newest first.
func sortRecords(recs []MessageRecord) {
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].At.After(recs[j].At) })
}

// selectHeld resolves a selector into the records it names: the queue ids
// given, or the account's messages still held; a queue id without a held
// record is returned apart.
func selectHeld(sel HeldSelector, found []MessageRecord) (recs []MessageRecord, unknown []string) {
	byID := make(map[string]MessageRecord, len(found))
	for _, rec := range found {
		if rec.Held {
			byID[rec.QueueID] = rec
		}
	}
	if len(sel.QueueIDs) == 0 {
		for _, rec := range found {
			if rec.Held && rec.Account == sel.Account && actionable(rec) {
				recs = append(recs, rec)
			}
		}
		return recs, nil
	}
	for _, id := range sel.QueueIDs {
		if rec, ok := byID[id]; ok {
			recs = append(recs, rec)
		} else {
			unknown = append(unknown, id)
		}
	}
	return recs, unknown
}

// actionable reports whether a held message can be acted on: it is still
// held (a failed command left it held).
func actionable(rec MessageRecord) bool {
	return rec.Status == StatusHeld || rec.Status == StatusFailed || rec.Status == ""
}

// requestFor builds the request for a held message, or the outcome that
// says why none is needed.
func requestFor(action DeskAction, rec MessageRecord, by string, now time.Time) (DeskRequest, *DeskOutcome) {
	req := DeskRequest{ID: newRequestID(), Action: action, QueueID: rec.QueueID, Instance: rec.Instance, Account: rec.Account, By: by, At: now}
	if !actionable(rec) {
		detail := fmt.Sprintf("no longer held: %s", rec.Status)
		if rec.StatusBy != "" {
			detail += " by " + rec.StatusBy
		}
		if !rec.StatusAt.IsZero() {
			detail += " at " + rec.StatusAt.UTC().Format(time.RFC3339)
		}
		return req, &DeskOutcome{Request: req, Status: StatusNotHeld, Detail: detail, At: now}
	}
	return req, nil
}

// ActOnHeld implements Admin.
func (r *Redis) ActOnHeld(ctx context.Context, action DeskAction, sel HeldSelector, by string, wait time.Duration) ([]DeskOutcome, error) {
	if action != Release && action != Purge {
		return nil, fmt.Errorf("held messages: unknown action %q (want release or purge)", action)
	}
	ctx, cancel := adminCtx(ctx)
	defer cancel()
	ids := sel.QueueIDs
	if len(ids) == 0 {
		var err error
		if ids, err = r.heldIDs(ctx, sel.Account); err != nil {
			return nil, fmt.Errorf("%s: %w", action, err)
		}
	}
	found, err := r.getRecords(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", action, err)
	}
	recs, unknown := selectHeld(sel, found)
	now := time.Now()
	var out []DeskOutcome
	for _, id := range unknown {
		out = append(out, DeskOutcome{Request: DeskRequest{Action: action, QueueID: id, By: by, At: now}, Status: StatusUnknown,
			Detail: "no held message with this queue id is recorded", At: now})
	}
	var reqs []DeskRequest
	pipe := r.client.Pipeline()
	instances := map[string]bool{}
	for _, rec := range recs {
		req, done := requestFor(action, rec, by, now)
		if done != nil {
			out = append(out, *done)
			continue
		}
		b, _ := json.Marshal(req)
		pipe.LPush(ctx, r.deskList(req.Instance), b)
		pipe.PExpire(ctx, r.deskList(req.Instance), r.policy.Desk.retention())
		r.audit(ctx, pipe, false, Account(req.Account), by, string(action)+"-request", "queue id "+req.QueueID+" on "+req.Instance, now)
		reqs = append(reqs, req)
		instances[req.Instance] = true
	}
	if len(reqs) == 0 {
		return out, nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("%s: %w", action, err)
	}
	for inst := range instances {
		// Best effort: an instance that missed it finds the request within
		// deskPoll.
		r.client.Publish(ctx, r.adminChannel(), "desk:"+inst)
	}
	return append(out, r.awaitOutcomes(ctx, reqs, wait)...), nil
}

// awaitOutcomes polls for the outcomes of requests until all are in or
// wait passes.
func (r *Redis) awaitOutcomes(ctx context.Context, reqs []DeskRequest, wait time.Duration) []DeskOutcome {
	outcomes := make(map[string]DeskOutcome, len(reqs))
	deadline := time.Now().Add(wait)
	for {
		pipe := r.client.Pipeline()
		cmds := map[string]*redis.StringCmd{}
		for _, req := range reqs {
			if _, ok := outcomes[req.ID]; !ok {
				cmds[req.ID] = pipe.Get(ctx, r.deskDone(req.ID))
			}
		}
		_, _ = pipe.Exec(ctx)
		for id, c := range cmds {
			var o DeskOutcome
			if b, err := c.Bytes(); err == nil && json.Unmarshal(b, &o) == nil {
				outcomes[id] = o
			}
		}
		if len(outcomes) == len(reqs) || !time.Now().Before(deadline) || ctx.Err() != nil {
			break
		}
		t := time.NewTimer(min(deskOutcomePoll, time.Until(deadline)))
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	out := make([]DeskOutcome, 0, len(reqs))
	for _, req := range reqs {
		o, ok := outcomes[req.ID]
		if !ok {
			o = DeskOutcome{Request: req, Status: StatusPending, At: time.Now(),
				Detail: fmt.Sprintf("instance %q did not answer within %s (the request stays queued for it)", req.Instance, wait)}
		}
		out = append(out, o)
	}
	return out
}

// NextDeskRequests implements DeskQueue.
func (r *Redis) NextDeskRequests(ctx context.Context, wait time.Duration) ([]DeskRequest, error) {
	deadline := time.Now().Add(wait)
	for {
		reqs, err := r.popDeskRequests(ctx)
		if err != nil || len(reqs) > 0 {
			return reqs, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, nil
		}
		t := time.NewTimer(min(left, deskPoll))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-r.deskWake:
		case <-t.C:
		}
		t.Stop()
	}
}

func (r *Redis) popDeskRequests(ctx context.Context) ([]DeskRequest, error) {
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	vals, err := r.client.RPopCount(ctx, r.deskList(r.opts.Instance), 100).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("desk requests: %w", err)
	}
	var out []DeskRequest
	for _, v := range vals {
		var req DeskRequest
		if json.Unmarshal([]byte(v), &req) == nil {
			out = append(out, req)
		}
	}
	return out, nil
}

// CompleteDeskRequest implements DeskQueue.
func (r *Redis) CompleteDeskRequest(ctx context.Context, o DeskOutcome) error {
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	req := o.Request
	if o.At.IsZero() {
		o.At = time.Now()
	}
	b, err := r.client.Get(ctx, r.qidKey(req.QueueID)).Bytes()
	pipe := r.client.Pipeline()
	if err == nil {
		if rec, err := decodeRecord(b); err == nil {
			rec.Status, rec.StatusBy, rec.StatusAt, rec.StatusDetail = o.Status, req.By, o.At, o.Detail
			nb := encodeRecord(rec)
			pipe.SetArgs(ctx, r.qidKey(req.QueueID), nb, redis.SetArgs{KeepTTL: true})
			if rec.MessageID != "" {
				pipe.SetArgs(ctx, r.midKey(rec.MessageID), nb, redis.SetArgs{KeepTTL: true})
			}
		}
	}
	ob, _ := json.Marshal(o)
	pipe.Set(ctx, r.deskDone(req.ID), ob, deskOutcomeTTL)
	r.audit(ctx, pipe, false, Account(req.Account), req.By, string(req.Action), outcomeDetail(o), o.At)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("outcome of %s %s: %w", req.Action, req.QueueID, err)
	}
	r.events.emit(outcomeEvent(o))
	return nil
}

// outcomeDetail is the audit log's line of an outcome.
func outcomeDetail(o DeskOutcome) string {
	s := fmt.Sprintf("queue id %s on %s: %s", o.Request.QueueID, o.Request.Instance, o.Status)
	if o.Detail != "" {
		s += " (" + strings.TrimSpace(o.Detail) + ")"
	}
	return s
}

// outcomeEvent is the event of an outcome: released or purged (any other
// status is told as the action asked, with its status).
func outcomeEvent(o DeskOutcome) Event {
	kind := EventReleased
	if o.Request.Action == Purge {
		kind = EventPurged
	}
	return Event{Kind: kind, Subject: Account(o.Request.Account), Outcome: &o, At: o.At}
}

// DecisionRecord implements Admin.
func (r *Redis) DecisionRecord(ctx context.Context, id string) (MessageRecord, bool, error) {
	ctx, cancel := adminCtx(ctx)
	defer cancel()
	id = strings.TrimSpace(id)
	pipe := r.client.Pipeline()
	q := pipe.Get(ctx, r.qidKey(id))
	m := pipe.Get(ctx, r.midKey(NormalizeMessageID(id)))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return MessageRecord{}, false, fmt.Errorf("record of %q: %w", id, err)
	}
	for _, c := range []*redis.StringCmd{q, m} {
		if b, err := c.Bytes(); err == nil {
			rec, err := decodeRecord(b)
			if rec.MessageID == "" && c == m {
				rec.MessageID = NormalizeMessageID(id) // the key of a Message-ID record
			}
			return rec, err == nil, err
		}
	}
	return MessageRecord{}, false, nil
}

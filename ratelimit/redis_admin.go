package ratelimit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// adminTimeout bounds an admin call that has no deadline of its own.
const adminTimeout = 10 * time.Second

func adminCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, adminTimeout)
}

// storedExemption is the JSON value of an exemption key.
type storedExemption struct {
	Reason string `json:"reason"`
	By     string `json:"by"`
	At     int64  `json:"at_us"`
	Until  int64  `json:"until_us,omitempty"`
}

// storedAudit is one JSON entry of an audit list (Subject: in the audit
// log of every subject, Subject.String).
type storedAudit struct {
	At      int64  `json:"at_us"`
	By      string `json:"by"`
	Action  string `json:"action"`
	Detail  string `json:"detail,omitempty"`
	Subject string `json:"subject,omitempty"`
}

func (a storedAudit) entry(s Subject) AuditEntry {
	return AuditEntry{At: usToTime(a.At), By: a.By, Action: a.Action, Subject: s, Detail: a.Detail}
}

func ttlFor(d time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return openLockTTL
}

func timeOrZero(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return usToTime(us)
}

// audit queues an audit entry for a subject on pipe, in the subject's
// list and in the audit log of every subject. On Cluster a transaction
// cannot reach the log's slot: when tx is set there, the log's entry is
// returned instead, for save to write once the transaction is saved.
func (r *Redis) audit(ctx context.Context, pipe redis.Pipeliner, tx bool, s Subject, by, action, detail string, now time.Time) []byte {
	b, _ := json.Marshal(storedAudit{At: now.UnixMicro(), By: by, Action: action, Detail: detail, Subject: s.String()})
	key := r.base(s) + ":audit"
	pipe.LPush(ctx, key, b)
	pipe.LTrim(ctx, key, 0, auditKeep-1)
	pipe.PExpire(ctx, key, openLockTTL)
	if tx && r.cluster {
		return b
	}
	r.pushAuditLog(ctx, pipe, b)
	return nil
}

// save runs the transaction of an admin change of s, writes logged (the
// audit log's entry audit returned, if any), then emits ev (when set) and
// announces the change (see Redis). what names the change in errors.
func (r *Redis) save(ctx context.Context, pipe redis.Pipeliner, logged []byte, s Subject, what string, ev *Event) error {
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	logErr := r.logAudit(ctx, what, logged)
	if ev != nil {
		r.events.emit(*ev)
	}
	return errors.Join(r.announce(ctx, s, what), logErr)
}

// Status implements Admin.
func (r *Redis) Status(ctx context.Context, s Subject) (Status, error) {
	ctx, cancel := adminCtx(ctx)
	defer cancel()
	now, err := r.serverNow(ctx)
	if err != nil {
		return Status{}, err
	}
	b := r.base(s)
	pipe := r.client.Pipeline()
	overrides := pipe.HGetAll(ctx, b+":override")
	exempt := pipe.Get(ctx, b+":exempt")
	lock := pipe.HMGet(ctx, b+":lock", "reason", "by", "at", "until")
	strikes := pipe.ZCount(ctx, b+":strikes", "("+formatInt(now.Add(-r.policy.Strikes.Window).UnixMicro()), "+inf")
	audit := pipe.LRange(ctx, b+":audit", 0, 19)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return Status{}, fmt.Errorf("status of %s: %w", s, err)
	}
	st := Status{Subject: s, StrikeWindow: r.policy.Strikes.Window}
	type counted struct {
		ls      LimitStatus
		buckets *redis.MapStringStringCmd
	}
	var cs []*counted
	pipe = r.client.Pipeline()
	for _, d := range s.Kind.dimensions() {
		rates, over := r.policy.configured(s, d), false
		if v, ok := overrides.Val()[d.logSuffix()]; ok {
			if o, ok := parseStoredOverride(s, d, v); ok && (o.Until.IsZero() || now.Before(o.Until)) {
				rates, over = o.Rates, true
				st.Overrides = append(st.Overrides, o)
			}
		}
		for _, rt := range rates {
			c := &counted{ls: LimitStatus{Dimension: d, Rate: rt, Override: over}}
			c.buckets = pipe.HGetAll(ctx, r.counterKey(s, d, rt.Window))
			cs = append(cs, c)
		}
	}
	if len(cs) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return Status{}, fmt.Errorf("status of %s: %w", s, err)
		}
	}
	nowUS := now.UnixMicro()
	for _, c := range cs {
		w := c.ls.Rate.Window
		first := firstBucket(nowUS, w)
		var oldest int64
		found := false
		for _, b := range parseBuckets(c.buckets.Val()) {
			if b.Index >= first && b.Count > 0 {
				c.ls.Used += b.Count
				if !found || b.Index < oldest {
					oldest, found = b.Index, true
				}
			}
		}
		c.ls.Remaining = max(0, c.ls.Rate.Limit-c.ls.Used)
		if found {
			c.ls.FreesIn = time.Duration(bucketLeaves(oldest, w)-nowUS) * time.Microsecond
		}
		st.Limits = append(st.Limits, c.ls)
	}
	if s.Kind == KindAccount {
		st.Strikes = int(strikes.Val())
		st.Lock = parseLock(lock.Val(), now)
	}
	if v, err := exempt.Result(); err == nil {
		var e storedExemption
		if json.Unmarshal([]byte(v), &e) == nil {
			st.Exemption = &Exemption{Subject: s, Reason: e.Reason, By: e.By, At: timeOrZero(e.At), Until: timeOrZero(e.Until)}
		}
	}
	for _, v := range audit.Val() {
		var a storedAudit
		if json.Unmarshal([]byte(v), &a) == nil {
			st.Audit = append(st.Audit, a.entry(s))
		}
	}
	return st, nil
}

// parseBuckets reads the bucket fields of a counter hash (HGETALL), leaving
// out n and lo.
func parseBuckets(h map[string]string) []bucket {
	out := make([]bucket, 0, len(h))
	for f, v := range h {
		i, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			continue
		}
		out = append(out, bucket{Index: i, Count: n})
	}
	return out
}

func parseStoredOverride(s Subject, d Dimension, v string) (Override, bool) {
	rates, until, ok := strings.Cut(v, "|")
	if !ok {
		return Override{}, false
	}
	u, err := strconv.ParseInt(until, 10, 64)
	if err != nil {
		return Override{}, false
	}
	return Override{Subject: s, Dimension: d, Rates: parseStoredRates(rates), Until: timeOrZero(u)}, true
}

// parseLock reads HMGET reason by at until; nil when there is no lock in
// force.
func parseLock(v []any, now time.Time) *Lock {
	if len(v) != 4 {
		return nil
	}
	str := func(i int) string { s, _ := v[i].(string); return s }
	at, err := strconv.ParseInt(str(2), 10, 64)
	if err != nil {
		return nil
	}
	until, _ := strconv.ParseInt(str(3), 10, 64)
	l := &Lock{Reason: str(0), By: str(1), At: usToTime(at), Until: timeOrZero(until)}
	if !l.Until.IsZero() && !now.Before(l.Until) {
		return nil
	}
	return l
}

// globEscape escapes glob characters of a key prefix for SCAN MATCH.
func globEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`*?[]\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// scan calls fn for every key matching pattern, on every master of a
// Cluster. It uses SCAN, never KEYS.
func (r *Redis) scan(ctx context.Context, pattern string, fn func(key string)) error {
	each := func(ctx context.Context, c redis.Cmdable, fn func(string)) error {
		it := c.Scan(ctx, 0, pattern, 500).Iterator()
		for it.Next(ctx) {
			fn(it.Val())
		}
		return it.Err()
	}
	cc, ok := r.client.(*redis.ClusterClient)
	if !ok {
		return each(ctx, r.client, fn)
	}
	var mu sync.Mutex // ForEachMaster runs the masters concurrently
	return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		return each(ctx, c, func(k string) {
			mu.Lock()
			defer mu.Unlock()
			fn(k)
		})
	})
}

// scanSubject calls fn for every key of subject s, scanning (on Cluster)
// only the master of the subject's slot.
func (r *Redis) scanSubject(ctx context.Context, s Subject, fn func(key string)) error {
	pattern := globEscape(r.base(s)) + ":*"
	var c redis.Cmdable = r.client
	if cc, ok := r.client.(*redis.ClusterClient); ok {
		m, err := cc.MasterForKey(ctx, r.base(s))
		if err != nil {
			return fmt.Errorf("master of %s: %w", s, err)
		}
		c = m
	}
	it := c.Scan(ctx, 0, pattern, 500).Iterator()
	for it.Next(ctx) {
		fn(it.Val())
	}
	return it.Err()
}

func sortLocked(out []LockedAccount) {
	sort.Slice(out, func(i, j int) bool { return out[i].Account < out[j].Account })
}

func sortExemptions(out []Exemption) {
	sort.Slice(out, func(i, j int) bool { return out[i].Subject.String() < out[j].Subject.String() })
}

// subjectOfKey parses prefix{kind:name}:suffix.
func (r *Redis) subjectOfKey(key, suffix string) (Subject, bool) {
	rest, ok := strings.CutPrefix(key, r.prefix+"{")
	if !ok {
		return Subject{}, false
	}
	rest, ok = strings.CutSuffix(rest, "}:"+suffix)
	if !ok {
		return Subject{}, false
	}
	kind, name, ok := strings.Cut(rest, ":")
	if !ok {
		return Subject{}, false
	}
	return Subject{SubjectKind(kind), name}, true
}

// topTarget is a kind of key Top ranks: the keys of subjects of one kind
// ending with "}:"+suffix (e.g. msgs:1h). For a counter, the buckets from
// from on are summed; for strikes (a sorted set), the members scored after
// from (microseconds).
type topTarget struct {
	kind   SubjectKind
	suffix string
	from   int64
}

// topPlan says what Top by ranks within window at nowUS: the SCAN pattern,
// what keys it finds are counted and how, and whether they are sorted sets
// (strikes) rather than counters. Each dimension ranked is read from one
// counter, of the window topWindow picks among the kept ones; a dimension
// with none kept adds nothing (no targets, no scan).
func (r *Redis) topPlan(by TopBy, window time.Duration, nowUS int64) (pattern string, targets []topTarget, zset bool, err error) {
	p := globEscape(r.prefix)
	counter := func(d Dimension, kind SubjectKind) {
		w, ok := topWindow(r.policy.keptWindows(d), window)
		if !ok {
			return
		}
		targets = append(targets, topTarget{kind, d.logSuffix() + ":" + FormatWindow(w), bucketOf(nowUS-window.Microseconds(), bucketWidth(w))})
	}
	switch by {
	case TopMessages:
		counter(AccountMessages, KindAccount)
		counter(SenderMessages, KindSender)
		counter(ClientMessages, KindClient)
		return p + "{*}:msgs:*", targets, false, nil
	case TopRecipients:
		counter(AccountRecipients, KindAccount)
		if len(targets) == 0 {
			return "", nil, false, nil
		}
		return p + "{acct:*}:" + globEscape(targets[0].suffix), targets, false, nil
	case TopStrikes:
		return p + "{acct:*}:strikes", []topTarget{{KindAccount, "strikes", nowUS - window.Microseconds()}}, true, nil
	}
	return "", nil, false, fmt.Errorf("top by %q: want messages, recipients or strikes", by)
}

// topMatch returns the subject of a key SCAN found and the target it is
// counted by.
func (r *Redis) topMatch(key string, targets []topTarget) (Subject, topTarget, bool) {
	for _, t := range targets {
		if s, ok := r.subjectOfKey(key, t.suffix); ok && s.Kind == t.kind {
			return s, t, true
		}
	}
	return Subject{}, topTarget{}, false
}

// sumFrom adds up the buckets of a counter hash (HGETALL) from bucket from
// on.
func sumFrom(h map[string]string, from int64) int64 {
	var n int64
	for _, b := range parseBuckets(h) {
		if b.Index >= from {
			n += b.Count
		}
	}
	return n
}

// Top implements Admin.
func (r *Redis) Top(ctx context.Context, by TopBy, window time.Duration, n int) ([]TopEntry, error) {
	ctx, cancel := adminCtx(ctx)
	defer cancel()
	now, err := r.serverNow(ctx)
	if err != nil {
		return nil, err
	}
	pattern, targets, zset, err := r.topPlan(by, window, now.UnixMicro())
	if err != nil || len(targets) == 0 {
		return nil, err
	}
	type found struct {
		s Subject
		t topTarget
	}
	var keys []string
	var subs []found
	err = r.scan(ctx, pattern, func(k string) {
		if s, t, ok := r.topMatch(k, targets); ok {
			keys = append(keys, k)
			subs = append(subs, found{s, t})
		}
	})
	if err != nil {
		return nil, fmt.Errorf("top by %s: %w", by, err)
	}
	var out []TopEntry
	for start := 0; start < len(keys); start += 500 {
		end := min(len(keys), start+500)
		pipe := r.client.Pipeline()
		counts := make([]func() int64, 0, end-start)
		for i := start; i < end; i++ {
			if zset {
				c := pipe.ZCount(ctx, keys[i], "("+formatInt(subs[i].t.from), "+inf")
				counts = append(counts, c.Val)
			} else {
				c, from := pipe.HGetAll(ctx, keys[i]), subs[i].t.from
				counts = append(counts, func() int64 { return sumFrom(c.Val(), from) })
			}
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("top by %s: %w", by, err)
		}
		for i, count := range counts {
			if c := count(); c > 0 {
				out = append(out, TopEntry{subs[start+i].s, c})
			}
		}
	}
	return rankTop(out, n), nil
}

// Locked implements Admin.
func (r *Redis) Locked(ctx context.Context) ([]LockedAccount, error) {
	ctx, cancel := adminCtx(ctx)
	defer cancel()
	now, err := r.serverNow(ctx)
	if err != nil {
		return nil, err
	}
	var keys []string
	if err := r.scan(ctx, globEscape(r.prefix)+"{acct:*}:lock", func(k string) { keys = append(keys, k) }); err != nil {
		return nil, fmt.Errorf("locked accounts: %w", err)
	}
	var out []LockedAccount
	for _, k := range keys {
		s, ok := r.subjectOfKey(k, "lock")
		if !ok {
			continue
		}
		v, err := r.client.HMGet(ctx, k, "reason", "by", "at", "until").Result()
		if err != nil {
			return nil, fmt.Errorf("locked accounts: %w", err)
		}
		if l := parseLock(v, now); l != nil {
			out = append(out, LockedAccount{s.Name, *l})
		}
	}
	sortLocked(out)
	return out, nil
}

// Lock implements Admin.
func (r *Redis) Lock(ctx context.Context, account, reason, by string, d time.Duration) error {
	ctx, cancel := adminCtx(ctx)
	defer cancel()
	now, err := r.serverNow(ctx)
	if err != nil {
		return err
	}
	l := Lock{Reason: reason, By: by, At: now}
	var until int64
	if d > 0 {
		l.Until = now.Add(d)
		until = l.Until.UnixMicro()
	}
	s := Account(account)
	key := r.base(s) + ":lock"
	pipe := r.client.TxPipeline()
	pipe.Del(ctx, key)
	pipe.HSet(ctx, key, "reason", reason, "by", by, "at", now.UnixMicro(), "until", until)
	pipe.PExpire(ctx, key, ttlFor(d))
	logged := r.audit(ctx, pipe, true, s, by, "lock", lockDetail(reason, d), now)
	return r.save(ctx, pipe, logged, s, fmt.Sprintf("lock account %q", account), &Event{Kind: EventLock, Subject: s, Lock: &l, At: now})
}

// Unlock implements Admin. It also clears the account's strikes, so that
// the next refusal does not lock it again at once.
func (r *Redis) Unlock(ctx context.Context, account, by string) error {
	ctx, cancel := adminCtx(ctx)
	defer cancel()
	now, err := r.serverNow(ctx)
	if err != nil {
		return err
	}
	s := Account(account)
	pipe := r.client.TxPipeline()
	pipe.Del(ctx, r.base(s)+":lock", r.base(s)+":strikes")
	logged := r.audit(ctx, pipe, true, s, by, "unlock", "", now)
	return r.save(ctx, pipe, logged, s, fmt.Sprintf("unlock account %q", account), &Event{Kind: EventUnlock, Subject: s, At: now})
}

// Reset implements Admin.
func (r *Redis) Reset(ctx context.Context, s Subject, dim Dimension, by string) error {
	if dim != "" {
		if err := checkOverride(s, dim); err != nil {
			return fmt.Errorf("reset: %w", err)
		}
	}
	ctx, cancel := adminCtx(ctx)
	defer cancel()
	now, err := r.serverNow(ctx)
	if err != nil {
		return err
	}
	b := r.base(s)
	// Every window's counter of the dimensions reset, whichever windows are
	// in force now (an override may have come and gone), found by one SCAN
	// of the subject's keys; and the sorted set of the layout before
	// buckets, which a milter not yet upgraded may still write.
	var stems []string
	for _, d := range s.Kind.dimensions() {
		if dim == "" || dim == d {
			stems = append(stems, b+":"+d.logSuffix())
		}
	}
	keys := append([]string(nil), stems...)
	err = r.scanSubject(ctx, s, func(k string) {
		for _, stem := range stems {
			if strings.HasPrefix(k, stem+":") {
				keys = append(keys, k)
				return
			}
		}
	})
	if err != nil {
		return fmt.Errorf("reset %s: %w", s, err)
	}
	if s.Kind == KindAccount && (dim == "" || dim == AccountNewRecipients) {
		keys = append(keys, b+":seen")
	}
	if s.Kind == KindAccount && dim == "" {
		keys = append(keys, b+":strikes")
	}
	pipe := r.client.TxPipeline()
	pipe.Del(ctx, keys...)
	logged := r.audit(ctx, pipe, true, s, by, "reset", string(dim), now)
	return r.save(ctx, pipe, logged, s, fmt.Sprintf("reset %s", s), nil)
}

// SetOverride implements Admin.
func (r *Redis) SetOverride(ctx context.Context, s Subject, dim Dimension, rates []Rate, d time.Duration, by string) error {
	if err := checkOverride(s, dim); err != nil {
		return err
	}
	ctx, cancel := adminCtx(ctx)
	defer cancel()
	now, err := r.serverNow(ctx)
	if err != nil {
		return err
	}
	key := r.base(s) + ":override"
	pipe := r.client.TxPipeline()
	var logged []byte
	if rates == nil {
		pipe.HDel(ctx, key, dim.logSuffix())
		logged = r.audit(ctx, pipe, true, s, by, "override-remove", string(dim), now)
	} else {
		var until int64
		if d > 0 {
			until = now.Add(d).UnixMicro()
		}
		pipe.HSet(ctx, key, dim.logSuffix(), formatRates(rates)+"|"+formatInt(until))
		// The key lives as long as its longest override: never shorten it.
		pipe.PExpire(ctx, key, openLockTTL)
		logged = r.audit(ctx, pipe, true, s, by, "override", overrideDetail(dim, rates, d), now)
	}
	return r.save(ctx, pipe, logged, s, fmt.Sprintf("override %s for %s", dim, s), nil)
}

// Exempt implements Admin.
func (r *Redis) Exempt(ctx context.Context, s Subject, reason string, d time.Duration, by string) error {
	ctx, cancel := adminCtx(ctx)
	defer cancel()
	now, err := r.serverNow(ctx)
	if err != nil {
		return err
	}
	e := storedExemption{Reason: reason, By: by, At: now.UnixMicro()}
	if d > 0 {
		e.Until = now.Add(d).UnixMicro()
	}
	v, _ := json.Marshal(e)
	pipe := r.client.TxPipeline()
	pipe.Set(ctx, r.base(s)+":exempt", v, ttlFor(d))
	logged := r.audit(ctx, pipe, true, s, by, "exempt", lockDetail(reason, d), now)
	return r.save(ctx, pipe, logged, s, fmt.Sprintf("exempt %s", s), nil)
}

// Unexempt implements Admin.
func (r *Redis) Unexempt(ctx context.Context, s Subject, by string) error {
	ctx, cancel := adminCtx(ctx)
	defer cancel()
	now, err := r.serverNow(ctx)
	if err != nil {
		return err
	}
	pipe := r.client.TxPipeline()
	pipe.Del(ctx, r.base(s)+":exempt")
	logged := r.audit(ctx, pipe, true, s, by, "unexempt", "", now)
	return r.save(ctx, pipe, logged, s, fmt.Sprintf("unexempt %s", s), nil)
}

// Exemptions implements Admin.
func (r *Redis) Exemptions(ctx context.Context) ([]Exemption, error) {
	ctx, cancel := adminCtx(ctx)
	defer cancel()
	var keys []string
	if err := r.scan(ctx, globEscape(r.prefix)+"{*}:exempt", func(k string) { keys = append(keys, k) }); err != nil {
		return nil, fmt.Errorf("exemptions: %w", err)
	}
	var out []Exemption
	for _, k := range keys {
		s, ok := r.subjectOfKey(k, "exempt")
		if !ok {
			continue
		}
		v, err := r.client.Get(ctx, k).Result()
		if errors.Is(err, redis.Nil) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("exemptions: %w", err)
		}
		var e storedExemption
		if json.Unmarshal([]byte(v), &e) == nil {
			out = append(out, Exemption{Subject: s, Reason: e.Reason, By: e.By, At: timeOrZero(e.At), Until: timeOrZero(e.Until)})
		}
	}
	sortExemptions(out)
	return out, nil
}

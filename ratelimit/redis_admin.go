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

// storedAudit is one JSON entry of an audit list.
type storedAudit struct {
	At     int64  `json:"at_us"`
	By     string `json:"by"`
	Action string `json:"action"`
	Detail string `json:"detail,omitempty"`
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

// audit queues an audit entry for a subject on pipe.
func (r *Redis) audit(ctx context.Context, pipe redis.Pipeliner, s Subject, by, action, detail string, now time.Time) {
	b, _ := json.Marshal(storedAudit{At: now.UnixMicro(), By: by, Action: action, Detail: detail})
	key := r.base(s) + ":audit"
	pipe.LPush(ctx, key, b)
	pipe.LTrim(ctx, key, 0, auditKeep-1)
	pipe.PExpire(ctx, key, openLockTTL)
}

// save runs the transaction of an admin change of s, then emits ev (when
// set) and announces the change (see Redis). what names the change in
// errors.
func (r *Redis) save(ctx context.Context, pipe redis.Pipeliner, s Subject, what string, ev *Event) error {
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if ev != nil {
		r.events.emit(*ev)
	}
	return r.announce(ctx, s, what)
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
		ls          LimitStatus
		count       *redis.IntCmd
		oldest      *redis.ZSliceCmd
		windowStart string
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
			from := "(" + formatInt(now.Add(-rt.Window).UnixMicro())
			key := b + ":" + d.logSuffix()
			c := &counted{ls: LimitStatus{Dimension: d, Rate: rt, Override: over}}
			c.count = pipe.ZCount(ctx, key, from, "+inf")
			c.oldest = pipe.ZRangeByScoreWithScores(ctx, key, &redis.ZRangeBy{Min: from, Max: "+inf", Count: 1})
			cs = append(cs, c)
		}
	}
	if len(cs) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return Status{}, fmt.Errorf("status of %s: %w", s, err)
		}
	}
	for _, c := range cs {
		c.ls.Used = c.count.Val()
		c.ls.Remaining = max(0, c.ls.Rate.Limit-c.ls.Used)
		if z := c.oldest.Val(); len(z) > 0 {
			c.ls.FreesIn = usToTime(int64(z[0].Score)).Add(c.ls.Rate.Window).Sub(now)
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
			st.Audit = append(st.Audit, AuditEntry{At: usToTime(a.At), By: a.By, Action: a.Action, Subject: s, Detail: a.Detail})
		}
	}
	return st, nil
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

// topPattern is the SCAN pattern of the counter keys ranked by Top, and
// the key suffix that names the counted dimension.
func (r *Redis) topPattern(by TopBy) (pattern, suffix string, err error) {
	p := globEscape(r.prefix)
	switch by {
	case TopMessages:
		return p + "{*}:msgs", "msgs", nil
	case TopRecipients:
		return p + "{acct:*}:rcpts", "rcpts", nil
	case TopStrikes:
		return p + "{acct:*}:strikes", "strikes", nil
	}
	return "", "", fmt.Errorf("top by %q: want messages, recipients or strikes", by)
}

// Top implements Admin.
func (r *Redis) Top(ctx context.Context, by TopBy, window time.Duration, n int) ([]TopEntry, error) {
	ctx, cancel := adminCtx(ctx)
	defer cancel()
	pattern, suffix, err := r.topPattern(by)
	if err != nil {
		return nil, err
	}
	now, err := r.serverNow(ctx)
	if err != nil {
		return nil, err
	}
	var keys []string
	if err := r.scan(ctx, pattern, func(k string) { keys = append(keys, k) }); err != nil {
		return nil, fmt.Errorf("top by %s: %w", by, err)
	}
	from := "(" + formatInt(now.Add(-window).UnixMicro())
	var out []TopEntry
	for start := 0; start < len(keys); start += 500 {
		batch := keys[start:min(len(keys), start+500)]
		pipe := r.client.Pipeline()
		cmds := make([]*redis.IntCmd, len(batch))
		for i, k := range batch {
			cmds[i] = pipe.ZCount(ctx, k, from, "+inf")
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("top by %s: %w", by, err)
		}
		for i, k := range batch {
			s, ok := r.subjectOfKey(k, suffix)
			if c := cmds[i].Val(); ok && c > 0 {
				out = append(out, TopEntry{s, c})
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
	r.audit(ctx, pipe, s, by, "lock", lockDetail(reason, d), now)
	return r.save(ctx, pipe, s, fmt.Sprintf("lock account %q", account), &Event{Kind: EventLock, Subject: s, Lock: &l, At: now})
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
	r.audit(ctx, pipe, s, by, "unlock", "", now)
	return r.save(ctx, pipe, s, fmt.Sprintf("unlock account %q", account), &Event{Kind: EventUnlock, Subject: s, At: now})
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
	var keys []string
	for _, d := range s.Kind.dimensions() {
		if dim == "" || dim == d {
			keys = append(keys, b+":"+d.logSuffix())
		}
	}
	if s.Kind == KindAccount && (dim == "" || dim == AccountNewRecipients) {
		keys = append(keys, b+":seen")
	}
	if s.Kind == KindAccount && dim == "" {
		keys = append(keys, b+":strikes")
	}
	pipe := r.client.TxPipeline()
	pipe.Del(ctx, keys...)
	r.audit(ctx, pipe, s, by, "reset", string(dim), now)
	return r.save(ctx, pipe, s, fmt.Sprintf("reset %s", s), nil)
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
	if rates == nil {
		pipe.HDel(ctx, key, dim.logSuffix())
		r.audit(ctx, pipe, s, by, "override-remove", string(dim), now)
	} else {
		var until int64
		if d > 0 {
			until = now.Add(d).UnixMicro()
		}
		pipe.HSet(ctx, key, dim.logSuffix(), formatRates(rates)+"|"+formatInt(until))
		// The key lives as long as its longest override: never shorten it.
		pipe.PExpire(ctx, key, openLockTTL)
		r.audit(ctx, pipe, s, by, "override", overrideDetail(dim, rates, d), now)
	}
	return r.save(ctx, pipe, s, fmt.Sprintf("override %s for %s", dim, s), nil)
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
	r.audit(ctx, pipe, s, by, "exempt", lockDetail(reason, d), now)
	return r.save(ctx, pipe, s, fmt.Sprintf("exempt %s", s), nil)
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
	r.audit(ctx, pipe, s, by, "unexempt", "", now)
	return r.save(ctx, pipe, s, fmt.Sprintf("unexempt %s", s), nil)
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

package ratelimit

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/redis/go-redis/v9"
)

// complaintScript records one complaint of an account, atomically: the
// complaint (once per ID), its count within the window, its strikes, and a
// lock at the complaint threshold (or at the strike threshold).
//
// KEYS: complaints (sorted set), complaint (hash), strikes, lock, audit.
// ARGV: 1 id, 2 JSON without closing brace, 3 window us, 4 threshold,
// 5 weight, 6 strike window us, 7 strike threshold, 8 lock for us (0: until
// unlocked), 9 TTL of an open-ended lock ms, 10 keep us, 11 monitor ("1"),
// 12 window text ("7d"), 13 strike window text, 14 audit JSON without
// closing brace.
// Reply: {dup, now_us, complaints, strikes, locked, newly ("complaints",
// "strikes" or ""), would_lock}.
var complaintScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function int(x) return string.format('%d', x) end
local id, window, threshold, weight = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local swindow, sthreshold, lockfor, keep = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[10])
local function locked()
  local l = redis.call('HMGET', KEYS[4], 'at', 'until')
  if not l[1] then return false end
  local u = tonumber(l[2]) or 0
  return u == 0 or u > now
end
local function count()
  return redis.call('ZCOUNT', KEYS[1], '(' .. int(now - window), '+inf')
end
local function strikes()
  if swindow <= 0 then return 0 end
  return redis.call('ZCOUNT', KEYS[3], '(' .. int(now - swindow), '+inf')
end
if redis.call('HSETNX', KEYS[2], id, ARGV[2] .. ',"at_us":' .. int(now) .. '}') == 0 then
  return {1, now, count(), strikes(), locked() and 1 or 0, '', 0}
end
redis.call('ZADD', KEYS[1], now, id)
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', int(now - keep))
if #old > 0 then
  redis.call('HDEL', KEYS[2], unpack(old))
  redis.call('ZREM', KEYS[1], unpack(old))
end
redis.call('PEXPIRE', KEYS[1], math.ceil(keep / 1000))
redis.call('PEXPIRE', KEYS[2], math.ceil(keep / 1000))
local n = count()
local s = 0
if weight > 0 and swindow > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', int(now - swindow))
  for i = 1, weight do redis.call('ZADD', KEYS[3], now, 'complaint:' .. id .. ':' .. i) end
  redis.call('PEXPIRE', KEYS[3], math.ceil(swindow / 1000) + 1000)
end
s = strikes()
local was = locked()
local newly, reason = '', ''
if not was then
  if threshold > 0 and n >= threshold then
    newly, reason = 'complaints', n .. ' complaints within ' .. ARGV[12]
  elseif weight > 0 and sthreshold > 0 and s >= sthreshold then
    newly, reason = 'strikes', s .. ' strikes within ' .. ARGV[13]
  end
end
local would = 0
if newly ~= '' and ARGV[11] == '1' then
  newly, would = '', 1
end
if newly ~= '' then
  local untl = 0
  if lockfor > 0 then untl = now + lockfor end
  local by = 'auto'
  if newly == 'complaints' then by = 'complaints' end
  redis.call('DEL', KEYS[4])
  redis.call('HSET', KEYS[4], 'reason', reason, 'by', by, 'at', now, 'until', untl)
  if untl > 0 then
    redis.call('PEXPIRE', KEYS[4], math.ceil(lockfor / 1000))
  else
    redis.call('PEXPIRE', KEYS[4], ARGV[9])
  end
end
redis.call('LPUSH', KEYS[5], ARGV[14] .. ',"at_us":' .. int(now) .. '}')
redis.call('LTRIM', KEYS[5], 0, 99)
redis.call('PEXPIRE', KEYS[5], ARGV[9])
return {0, now, n, s, (was or newly ~= '') and 1 or 0, newly, would, reason}
`)

// unattributedScript records an unattributed complaint once per ID.
// KEYS: index (sorted set), data (hash). ARGV: id, JSON without closing
// brace, keep us.
var unattributedScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function int(x) return string.format('%d', x) end
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2] .. ',"at_us":' .. int(now) .. '}') == 0 then
  return {1, now}
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
local keep = tonumber(ARGV[3])
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', int(now - keep))
if #old > 0 then
  redis.call('HDEL', KEYS[2], unpack(old))
  redis.call('ZREM', KEYS[1], unpack(old))
end
redis.call('PEXPIRE', KEYS[1], math.ceil(keep / 1000))
redis.call('PEXPIRE', KEYS[2], math.ceil(keep / 1000))
return {0, now}
`)

// unattributedKeys are the index and data of unattributed complaints, in
// one slot (hash tag) for the script.
func (r *Redis) unattributedKeys() []string {
	return []string{r.prefix + "{complaints}:unattributed", r.prefix + "{complaints}:unattributed:data"}
}

// complaintJSON is a complaint's JSON without its closing brace.
func complaintJSON(c Complaint) string {
	c.AtUS, c.At = 0, time.Time{}
	b, _ := json.Marshal(c)
	return string(b[:len(b)-1])
}

// AddComplaint implements Admin.
func (r *Redis) AddComplaint(ctx context.Context, c Complaint, by string) (ComplaintResult, error) {
	ctx, cancel := adminCtx(ctx)
	defer cancel()
	if c.ID == "" {
		c.ID = newRequestID()
	}
	dp := r.policy.Desk
	if c.Account == "" {
		v, err := unattributedScript.Run(ctx, r.client, r.unattributedKeys(), c.ID, complaintJSON(c), dp.complaintKeep().Microseconds()).Int64Slice()
		if err != nil {
			return ComplaintResult{}, fmt.Errorf("complaint %s: %w: %w", c.ID, ErrUnavailable, err)
		}
		c.At = usToTime(v[1])
		res := ComplaintResult{Complaint: c, Duplicate: v[0] == 1}
		if !res.Duplicate {
			r.events.emit(Event{Kind: EventComplaint, Complaint: &c, At: c.At})
		}
		return res, nil
	}
	s := Account(c.Account)
	b := r.base(s)
	sp := r.policy.Strikes
	audit, _ := json.Marshal(storedAudit{By: by, Action: "complaint", Detail: complaintDetail(c)})
	keys := []string{b + ":complaints", b + ":complaint", b + ":strikes", b + ":lock", b + ":audit"}
	args := []any{c.ID, complaintJSON(c), dp.complaintWindow().Microseconds(), dp.ComplaintThreshold, dp.ComplaintStrikeWeight,
		sp.Window.Microseconds(), sp.Threshold, sp.LockFor.Microseconds(), openLockTTL.Milliseconds(), dp.complaintKeep().Microseconds(),
		boolArg(r.opts.Monitor), FormatWindow(dp.complaintWindow()), FormatWindow(sp.Window), string(audit[:len(audit)-1])}
	v, err := complaintScript.Run(ctx, r.client, keys, args...).Slice()
	if err != nil {
		return ComplaintResult{}, fmt.Errorf("complaint %s about %q: %w: %w", c.ID, c.Account, ErrUnavailable, err)
	}
	num := func(i int) int64 {
		if i < len(v) {
			n, _ := v[i].(int64)
			return n
		}
		return 0
	}
	str := func(i int) string {
		if i < len(v) {
			s, _ := v[i].(string)
			return s
		}
		return ""
	}
	now := usToTime(num(1))
	c.At = now
	res := ComplaintResult{Complaint: c, Duplicate: num(0) == 1, Complaints: int(num(2)), Strikes: int(num(3)),
		Locked: num(4) == 1, WouldLock: num(6) == 1}
	if res.Duplicate {
		return res, nil
	}
	// the audit log of every subject lies in a slot of its own: written
	// after the script, which wrote the account's entry
	logged, _ := json.Marshal(storedAudit{At: num(1), By: by, Action: "complaint", Detail: complaintDetail(c), Subject: s.String()})
	logErr := r.logAudit(ctx, fmt.Sprintf("complaint %s about %q", c.ID, c.Account), logged)
	r.recent.invalidate(s)
	r.events.emit(Event{Kind: EventComplaint, Subject: s, Complaint: &c, Complaints: res.Complaints, Strikes: res.Strikes, At: now})
	if newly := str(5); newly != "" {
		lk := &Lock{Reason: str(7), By: "auto", At: now}
		if newly == "complaints" {
			lk.By = "complaints"
		}
		if sp.LockFor > 0 {
			lk.Until = now.Add(sp.LockFor)
		}
		res.NewlyLocked, res.Lock = true, lk
		r.events.emit(Event{Kind: EventLock, Subject: s, Lock: lk, Strikes: res.Strikes, At: now})
		_ = r.announce(ctx, s, "lock by complaints")
	}
	if res.WouldLock {
		r.events.emit(Event{Kind: EventWouldLock, Subject: s, Strikes: res.Strikes, At: now})
	}
	return res, logErr
}

// complaintDetail is the audit log's line of a complaint.
func complaintDetail(c Complaint) string {
	s := c.Type
	if c.QueueID != "" {
		s += " about queue id " + c.QueueID
	}
	if c.MessageID != "" {
		s += " <" + c.MessageID + ">"
	}
	if c.Reporter != "" {
		s += " from " + c.Reporter
	}
	return s
}

// Complaints implements Admin.
func (r *Redis) Complaints(ctx context.Context, account string) ([]Complaint, error) {
	ctx, cancel := adminCtx(ctx)
	defer cancel()
	key := r.unattributedKeys()[1]
	if account != "" {
		key = r.base(Account(account)) + ":complaint"
	}
	h, err := r.client.HGetAll(ctx, key).Result()
	if err != nil {
		return nil, fmt.Errorf("complaints: %w", err)
	}
	from := time.Now().Add(-r.policy.Desk.complaintKeep())
	out := make([]Complaint, 0, len(h))
	for _, v := range h {
		var c Complaint
		if json.Unmarshal([]byte(v), &c) == nil {
			c.At = usToTime(c.AtUS)
			if c.At.After(from) {
				out = append(out, c)
			}
		}
	}
	sortComplaints(out)
	return out, nil
}

func sortComplaints(cs []Complaint) {
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].At.After(cs[j].At) })
}

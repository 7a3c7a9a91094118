-- check-and-charge: one call per message (per cluster slot).
--
-- KEYS: the keys of each subject, in this fixed layout per kind
--   account (8): msgs, rcpts, newrcpts, seen, strikes, lock, override, exempt
--   sender  (3): msgs, override, exempt
--   client  (2): msgs, exempt
--   (msgs, rcpts and newrcpts are the stems of the counters: the counter of a
--   window is the stem followed by ":" and the window's text, e.g.
--   am:{acct:alice}:msgs:1h, in the slot of the stem's hash tag)
-- ARGV: 1 mode ("charge" | "strike"), 2 call id (unique; names a strike
--   without a Message-ID), 3 clock offset in microseconds (tests only),
--   4 Message-ID (strike de-duplication), 5 strike threshold, 6 strike window
--   (us), 7 auto-lock duration (us, 0 = until unlocked), 8 monitor ("1": never
--   lock), 9 strike on refusal ("1"), 10 TTL of an open-ended lock (ms),
--   11 subject count, 12 the strike window as people write it ("1h"),
--   then per subject its kind ("a", "s", "c") and the
--   configured rates of its dimensions ("LIMIT:WINDOW_US:WINDOW_TEXT,...";
--   account: msgs, rcpts, newrcpts; sender and client: msgs), then the
--   recipient count and the (normalised) recipients.
-- Reply: {status, now_us, strikes, newly_locked, would_lock, ...}
--   "locked": reason, by, at_us, until_us
--   "exempt": subject index
--   "over":   subject index, dimension, limit, window_us, retry_us
--   "ok":     per charged window: subject index, dimension, limit, window_us, used, cost
--   "strike": nothing more
--
-- Counters (see window.go): a window W has its own counter per subject and
-- dimension, a hash of 60 buckets of width B = ceil(W/60) microseconds:
-- field "<i>" holds what was charged in [i*B, (i+1)*B); field "n" is the sum
-- of the bucket fields stored and "lo" a lower bound of the oldest stored
-- bucket. At time now the counter counts the buckets from
-- floor((now-W)/B) on. Stale buckets are deleted (and taken off n) when the
-- counter is next charged.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(ARGV[3])
local mode, callid = ARGV[1], ARGV[2]

-- Integers are exact in Lua numbers up to 2^53 (microsecond times are about
-- 2^51), but "/" and "%" round: idiv divides exactly, rounding down, and
-- int writes an integer as a command argument in full (never 1.7e+15).
local function idiv(a, b)
  local r = math.fmod(a, b)
  local q = (a - r) / b
  if r < 0 then q = q - 1 end
  return q
end
local function int(x) return string.format('%d', x) end

-- the text of a window as FormatWindow writes it (for runtime overrides
-- stored without it)
local function window_text(us)
  if us % 3600000000 == 0 then return int(us / 3600000000) .. 'h' end
  if us % 60000000 == 0 then return int(us / 60000000) .. 'm' end
  return int(idiv(us, 1000000)) .. 's'
end

-- "LIMIT:WINDOW_US[:WINDOW_TEXT],..."
local function parse_rates(s)
  local out = {}
  for item in string.gmatch(s, '[^,]+') do
    local l, w, txt = string.match(item, '^(%d+):(%d+):?(%w*)$')
    if l then
      w = tonumber(w)
      if txt == '' then txt = window_text(w) end
      out[#out + 1] = {tonumber(l), w, txt}
    end
  end
  return out
end

-- effective rates: a runtime override in force replaces the configured ones
-- (ov: the subject's override fields, read once with HMGET)
local function rates_for(ov, field, configured)
  if ov then
    local v = ov[field]
    if v then
      local r, u = string.match(v, '^([^|]*)|(%d+)')
      if r and (tonumber(u) == 0 or tonumber(u) > now) then
        return parse_rates(r)
      end
    end
  end
  return parse_rates(configured)
end

-- subjects
local subjects, acct = {}, nil
local ki, ai = 1, 13
for i = 1, tonumber(ARGV[11]) do
  local kind = ARGV[ai]
  local s = {kind = kind, index = i - 1}
  if kind == 'a' then
    s.msgs, s.rcpts, s.newrcpts, s.seen, s.strikes, s.lock, s.override, s.exempt =
      KEYS[ki], KEYS[ki + 1], KEYS[ki + 2], KEYS[ki + 3], KEYS[ki + 4], KEYS[ki + 5], KEYS[ki + 6], KEYS[ki + 7]
    s.conf = {msgs = ARGV[ai + 1], rcpts = ARGV[ai + 2], newrcpts = ARGV[ai + 3]}
    ki, ai = ki + 8, ai + 4
    acct = s
  elseif kind == 's' then
    s.msgs, s.override, s.exempt = KEYS[ki], KEYS[ki + 1], KEYS[ki + 2]
    s.conf = {msgs = ARGV[ai + 1]}
    ki, ai = ki + 3, ai + 2
  else
    s.msgs, s.exempt = KEYS[ki], KEYS[ki + 1]
    s.conf = {msgs = ARGV[ai + 1]}
    ki, ai = ki + 2, ai + 2
  end
  subjects[#subjects + 1] = s
end
local rcpts, seenr = {}, {}
for i = ai + 1, ai + tonumber(ARGV[ai]) do
  local r = ARGV[i]
  if not seenr[r] then
    seenr[r] = true
    rcpts[#rcpts + 1] = r
  end
end
local nrcpt = tonumber(ARGV[ai])

-- Admin state (a lock, overrides, exemptions) is rare: one EXISTS over all
-- of its keys tells whether any is there, and only then are they read one
-- by one. The common call (none of them) costs one command instead of one
-- per key kind.
local admin_keys = {}
if acct then admin_keys[1] = acct.lock end
for _, s in ipairs(subjects) do
  admin_keys[#admin_keys + 1] = s.exempt
  if s.override then admin_keys[#admin_keys + 1] = s.override end
end
local admin = redis.call('EXISTS', unpack(admin_keys)) > 0
-- ===== abuse desk: the Message-ID record of an allowed message ==========
-- Additive to the call: after the subjects' keys KEYS may hold the record's
-- key, and after the recipients ARGV its JSON without the closing brace and
-- its TTL in milliseconds. The record is completed with the server time and
-- the usage of every window charged ("u": kind, dimension, limit,
-- window_us, used) and written where the call allows the message.
local desk_key, desk_json = KEYS[ki], ARGV[ai + nrcpt + 1]
local desk_ttl = tonumber(ARGV[ai + nrcpt + 2] or '')
local function desk_record(checks)
  if not desk_key or not desk_json or not desk_ttl or desk_ttl <= 0 then return end
  local u = {}
  for _, c in ipairs(checks) do
    u[#u + 1] = '["' .. c.s.kind .. '","' .. c.dim .. '",' .. int(c.limit) .. ',' .. int(c.window) .. ',' .. int(c.used + c.cost) .. ']'
  end
  redis.call('SET', desk_key, desk_json .. ',"at_us":' .. int(now) .. ',"u":[' .. table.concat(u, ',') .. ']}', 'PX', int(desk_ttl))
end
-- ===== end of the abuse desk's section ==================================

-- ===== the console's sending history (history.go) =======================
-- A message allowed is counted in its hour, field "<hour>" (microseconds
-- / 3600e6) of the account's hash :sent, beside its counters (same hash
-- tag, hence slot): one HINCRBY. The hour's first message also drops the
-- hours that left the 48 kept and sets the TTL (49 h).
local function count_sent()
  if not acct then return end
  local key = string.sub(acct.msgs, 1, -5) .. 'sent'
  local hour = idiv(now, 3600000000)
  if redis.call('HINCRBY', key, int(hour), 1) == 1 then
    local stale = {}
    for _, f in ipairs(redis.call('HKEYS', key)) do
      local h = tonumber(f)
      if not h or h <= hour - 48 then stale[#stale + 1] = f end
    end
    if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
    redis.call('PEXPIRE', key, 49 * 3600000)
  end
end
-- ===== end of the sending history =======================================

-- the lock: an expired one is removed
local function read_lock()
  if not acct or not admin then return nil end
  local l = redis.call('HMGET', acct.lock, 'reason', 'by', 'at', 'until')
  if not l[3] then return nil end
  local u = tonumber(l[4]) or 0
  if u > 0 and u <= now then
    redis.call('DEL', acct.lock)
    return nil
  end
  return {l[1] or '', l[2] or '', tonumber(l[3]) or 0, u}
end

local strike_window = tonumber(ARGV[6])
local function count_strikes()
  if not acct or strike_window <= 0 then return 0 end
  return redis.call('ZCOUNT', acct.strikes, string.format('(%d', now - strike_window), '+inf')
end

-- add a strike (one per Message-ID per window); lock at the threshold
local function strike()
  if not acct or strike_window <= 0 then return 0, 0, 0 end
  local member = ARGV[4]
  if member == '' then member = 'call:' .. callid end
  redis.call('ZREMRANGEBYSCORE', acct.strikes, '-inf', now - strike_window)
  local prev = redis.call('ZSCORE', acct.strikes, member)
  if not prev then
    redis.call('ZADD', acct.strikes, now, member)
  end
  redis.call('PEXPIRE', acct.strikes, math.ceil(strike_window / 1000) + 1000)
  local n = redis.call('ZCARD', acct.strikes)
  local threshold = tonumber(ARGV[5])
  if threshold > 0 and n >= threshold and not prev then
    if ARGV[8] == '1' then
      if n == threshold then return n, 0, 1 end
      return n, 0, 0
    end
    local lock_for = tonumber(ARGV[7])
    local untl = 0
    if lock_for > 0 then untl = now + lock_for end
    redis.call('HSET', acct.lock, 'reason', n .. ' strikes within ' .. ARGV[12],
      'by', 'auto', 'at', now, 'until', untl)
    if untl > 0 then
      redis.call('PEXPIRE', acct.lock, math.ceil(lock_for / 1000))
    else
      redis.call('PEXPIRE', acct.lock, ARGV[10])
    end
    return n, 1, 0
  end
  return n, 0, 0
end

local lock = read_lock()
if lock then
  return {'locked', now, count_strikes(), 0, 0, lock[1], lock[2], lock[3], lock[4]}
end
if mode == 'strike' then
  local n, newly, would = strike()
  return {'strike', now, n, newly, would}
end

-- exemptions, then each override hash read once: only when some admin key
-- exists (see admin above)
if admin then
  for _, s in ipairs(subjects) do
    if redis.call('EXISTS', s.exempt) == 1 then
      desk_record({})
      count_sent()
      return {'exempt', now, 0, 0, 0, s.index}
    end
  end
end
local dims = {a = {'msgs', 'rcpts', 'newrcpts'}, s = {'msgs'}}
for _, s in ipairs(subjects) do
  if admin and s.override then
    local fields = dims[s.kind]
    local v = redis.call('HMGET', s.override, unpack(fields))
    s.ov = {}
    for i, f in ipairs(fields) do
      if v[i] then s.ov[f] = v[i] end
    end
  end
end

-- the windows to check
local checks = {}
local function add(s, dim, stem, cost)
  local rates = rates_for(s.ov, dim, s.conf[dim])
  for _, r in ipairs(rates) do
    checks[#checks + 1] = {s = s, dim = dim, key = stem .. ':' .. r[3], limit = r[1], window = r[2], cost = cost}
  end
end
local newr = {}
for _, s in ipairs(subjects) do
  add(s, 'msgs', s.msgs, 1)
  if s.kind == 'a' then
    add(s, 'rcpts', s.rcpts, nrcpt)
    local first = #checks + 1
    add(s, 'newrcpts', s.newrcpts, 0)
    if #checks >= first then
      -- a recipient is new when the account did not send to it within the
      -- longest window of the limit
      local longest = 0
      for i = first, #checks do
        if checks[i].window > longest then longest = checks[i].window end
      end
      if #rcpts > 0 then
        local last = redis.call('ZMSCORE', s.seen, unpack(rcpts))
        for i, r in ipairs(rcpts) do
          if not last[i] or tonumber(last[i]) <= now - longest then newr[#newr + 1] = r end
        end
      end
      for i = first, #checks do checks[i].cost = #newr end
      s.seen_window = longest
    end
  end
end

-- read a window's counter: what it counts now, and which stale buckets
-- (older than the window) are to be deleted from it when it is charged
local function read_counter(c)
  local w = c.window
  c.width = math.max(1, idiv(w + 59, 60))
  c.cur = idiv(now, c.width)
  c.cutoff = idiv(now - w, c.width)
  c.field = int(c.cur)
  local v = redis.call('HMGET', c.key, 'n', 'lo', c.field)
  local n, lo = tonumber(v[1]) or 0, tonumber(v[2])
  c.curcount = tonumber(v[3]) or 0
  c.stale = {}
  if lo and lo < c.cutoff then
    if c.cutoff - lo <= 64 then
      local fields = {}
      for i = lo, c.cutoff - 1 do fields[#fields + 1] = int(i) end
      local old = redis.call('HMGET', c.key, unpack(fields))
      for i, f in ipairs(fields) do
        if old[i] then
          n = n - tonumber(old[i])
          c.stale[#c.stale + 1] = f
        end
      end
    else
      -- idle for long: count what is left
      local all = redis.call('HGETALL', c.key)
      n = 0
      for i = 1, #all, 2 do
        local b = tonumber(all[i])
        if b then
          if b < c.cutoff then
            c.stale[#c.stale + 1] = all[i]
          else
            n = n + tonumber(all[i + 1])
          end
        end
      end
    end
  end
  c.lo = lo
  c.used = math.max(0, n)
end

-- the retry time of a refusal (retryAfter in window.go): the oldest
-- buckets leave the window one by one until the charge fits
local function retry_after(c)
  if c.cost > c.limit or c.used == 0 then return c.window end
  local all = redis.call('HGETALL', c.key)
  local live = {}
  for i = 1, #all, 2 do
    local b = tonumber(all[i])
    if b and b >= c.cutoff then
      live[#live + 1] = {b, tonumber(all[i + 1])}
    end
  end
  table.sort(live, function(x, y) return x[1] < y[1] end)
  local left = c.used
  for _, b in ipairs(live) do
    left = left - b[2]
    if left + c.cost <= c.limit then
      return (b[1] + 1) * c.width + c.window - now
    end
  end
  return c.window
end

-- check every window; refuse at the first one exceeded. Two rates of one
-- window share a counter: it is read (and later charged) once.
local counters, order = {}, {}
for _, c in ipairs(checks) do
  local k = counters[c.key]
  if k then
    c.used, c.width, c.cutoff = k.used, k.width, k.cutoff
  else
    read_counter(c)
    counters[c.key] = c
    order[#order + 1] = c
  end
  if c.cost > 0 and c.used + c.cost > c.limit then
    local retry = retry_after(c)
    local n, newly, would = count_strikes(), 0, 0
    if ARGV[9] == '1' then n, newly, would = strike() end
    return {'over', now, n, newly, would, c.s.index, c.dim, c.limit, c.window, retry}
  end
end

-- charge every counter once: its current bucket, n and lo, with stale
-- buckets deleted; a counter given nothing (no new recipient) is left as
-- it is. The TTL outlives the last bucket counted: the bucket charged now
-- leaves the window at (cur + 1) * B + W, so a TTL of W + B plus a second
-- set at the bucket's first charge covers every later charge of the same
-- bucket: PEXPIRE runs once per bucket (a busy account's counters skip it
-- on most calls), not once per call.
for _, c in ipairs(order) do
  if c.cost > 0 then
    local key = c.key
    if #c.stale > 0 then redis.call('HDEL', key, unpack(c.stale)) end
    -- (at most the current bucket: a server clock set back charges a
    -- bucket below the old lo)
    local lo = c.cur
    if c.lo then lo = math.min(math.max(c.cutoff, c.lo), c.cur) end
    redis.call('HSET', key, c.field, int(c.curcount + c.cost), 'n', int(c.used + c.cost), 'lo', int(lo))
    if c.curcount == 0 then
      redis.call('PEXPIRE', key, int(math.ceil((c.window + c.width) / 1000) + 1000))
    end
  end
end

-- recipients seen, for new recipients: members older than the window are
-- pruned by about one call in 16 (chosen by the random call id); a read
-- compares the time, so an old member is never taken as recent
if acct and acct.seen_window and #rcpts > 0 then
  local now_s = int(now)
  local args = {}
  for i, r in ipairs(rcpts) do
    args[#args + 1] = now_s
    args[#args + 1] = r
    if #args >= 400 or i == #rcpts then
      redis.call('ZADD', acct.seen, unpack(args))
      args = {}
    end
  end
  local digit = tonumber(string.sub(callid, -1), 16)
  if digit == nil or digit == 0 then
    redis.call('ZREMRANGEBYSCORE', acct.seen, '-inf', now - acct.seen_window)
  end
  redis.call('PEXPIRE', acct.seen, math.ceil(acct.seen_window / 1000) + 1000)
end

desk_record(checks)
count_sent()
local out = {'ok', now, 0, 0, 0}
for _, c in ipairs(checks) do
  for _, v in ipairs({c.s.index, c.dim, c.limit, c.window, c.used + c.cost, c.cost}) do
    out[#out + 1] = v
  end
end
return out

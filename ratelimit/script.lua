-- check-and-charge: one call per message (per cluster slot).
--
-- KEYS: the keys of each subject, in this fixed layout per kind
--   account (8): msgs, rcpts, newrcpts, seen, strikes, lock, override, exempt
--   sender  (3): msgs, override, exempt
--   client  (2): msgs, exempt
-- ARGV: 1 mode ("charge" | "strike"), 2 call id (unique; members are
--   "<call id>:<n>"), 3 clock offset in microseconds (tests only),
--   4 Message-ID (strike de-duplication), 5 strike threshold, 6 strike window
--   (us), 7 auto-lock duration (us, 0 = until unlocked), 8 monitor ("1": never
--   lock), 9 strike on refusal ("1"), 10 TTL of an open-ended lock (ms),
--   11 subject count, 12 the strike window as people write it ("1h"),
--   then per subject its kind ("a", "s", "c") and the
--   configured rates of its dimensions ("LIMIT:WINDOW_US,..."; account: msgs,
--   rcpts, newrcpts; sender and client: msgs), then the recipient count and
--   the (normalised) recipients.
-- Reply: {status, now_us, strikes, newly_locked, would_lock, ...}
--   "locked": reason, by, at_us, until_us
--   "exempt": subject index
--   "over":   subject index, dimension, limit, window_us, retry_us
--   "ok":     per charged window: subject index, dimension, limit, window_us, used, cost
--   "strike": nothing more
-- Sliding log: every charged unit is a sorted-set member scored by its time;
-- a window of length W counts the members newer than now - W, so a limit
-- holds for every window of length W, not only for aligned ones.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(ARGV[3])
local mode, callid = ARGV[1], ARGV[2]

local function parse_rates(s)
  local out = {}
  for l, w in string.gmatch(s, '(%d+):(%d+)') do
    out[#out + 1] = {tonumber(l), tonumber(w)}
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

-- the lock: an expired one is removed
local function read_lock()
  if not acct then return nil end
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

-- one EXISTS for all exemptions; only when one exists, find which
local exempts = {}
for _, s in ipairs(subjects) do exempts[#exempts + 1] = s.exempt end
if redis.call('EXISTS', unpack(exempts)) > 0 then
  for _, s in ipairs(subjects) do
    if redis.call('EXISTS', s.exempt) == 1 then
      return {'exempt', now, 0, 0, 0, s.index}
    end
  end
end

-- each override hash is read once
local dims = {a = {'msgs', 'rcpts', 'newrcpts'}, s = {'msgs'}}
for _, s in ipairs(subjects) do
  if s.override then
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
local function add(s, dim, key, cost)
  local rates = rates_for(s.ov, dim, s.conf[dim])
  for _, r in ipairs(rates) do
    checks[#checks + 1] = {s = s, dim = dim, key = key, limit = r[1], window = r[2], cost = cost}
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

-- check every window; refuse at the first one exceeded
for _, c in ipairs(checks) do
  local from = string.format('(%d', now - c.window)
  c.used = redis.call('ZCOUNT', c.key, from, '+inf')
  if c.cost > 0 and c.used + c.cost > c.limit then
    local retry = c.window
    local idx = c.used + c.cost - c.limit - 1
    if c.cost <= c.limit and idx < c.used then
      local e = redis.call('ZRANGEBYSCORE', c.key, from, '+inf', 'WITHSCORES', 'LIMIT', idx, 1)
      if e[2] then retry = tonumber(e[2]) + c.window - now end
    end
    local n, newly, would = count_strikes(), 0, 0
    if ARGV[9] == '1' then n, newly, would = strike() end
    return {'over', now, n, newly, would, c.s.index, c.dim, c.limit, c.window, retry}
  end
end

-- Members older than the window are pruned by about one call in 16 (chosen
-- by the random call id): every read bounds its range by the window, so an
-- old member is never counted, and pruning each time would only cost more.
local digit = tonumber(string.sub(callid, -1), 16)
local prune = digit == nil or digit == 0

-- charge every counter once, with its longest window (the time written
-- once as an integer: Redis would format a Lua number per argument)
local now_s = string.format('%d', now)
local keys, order = {}, {}
for _, c in ipairs(checks) do
  local k = keys[c.key]
  if not k then
    k = {cost = c.cost, window = c.window}
    keys[c.key] = k
    order[#order + 1] = c.key
  elseif c.window > k.window then
    k.window = c.window
  end
end
for _, key in ipairs(order) do
  local k = keys[key]
  local i = 1
  while i <= k.cost do
    local args = {}
    local last = math.min(k.cost, i + 199)
    for j = i, last do
      args[#args + 1] = now_s
      args[#args + 1] = callid .. ':' .. j
    end
    redis.call('ZADD', key, unpack(args))
    i = last + 1
  end
  if prune then redis.call('ZREMRANGEBYSCORE', key, '-inf', now - k.window) end
  -- a key is given its TTL when charged: with nothing added (no new
  -- recipient) the TTL set with its newest member still outlives it
  if k.cost > 0 then redis.call('PEXPIRE', key, math.ceil(k.window / 1000) + 1000) end
end
if acct and acct.seen_window and #rcpts > 0 then
  local args = {}
  for i, r in ipairs(rcpts) do
    args[#args + 1] = now_s
    args[#args + 1] = r
    if #args >= 400 or i == #rcpts then
      redis.call('ZADD', acct.seen, unpack(args))
      args = {}
    end
  end
  if prune then redis.call('ZREMRANGEBYSCORE', acct.seen, '-inf', now - acct.seen_window) end
  redis.call('PEXPIRE', acct.seen, math.ceil(acct.seen_window / 1000) + 1000)
end

local out = {'ok', now, 0, 0, 0}
for _, c in ipairs(checks) do
  for _, v in ipairs({c.s.index, c.dim, c.limit, c.window, c.used + c.cost, c.cost}) do
    out[#out + 1] = v
  end
end
return out

package ratelimit

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// topScanScript is one SCAN step of TopOnServer, run on one node: it counts
// what every key of the step holds within the window and returns the next
// cursor followed by key, count pairs of only the keys whose count reaches
// ARGV[4] (the caller's current n-th best, or 1), so that the client parses
// the contenders instead of every key. ARGV[5] says what the keys are: "h",
// counters (the bucket fields from a first bucket on are summed), or "z",
// strikes (the members scored after a time are counted); then come the
// targets, triples of key head, key tail and first bucket (or time): a key
// is counted only when it starts with a head and ends with its tail (see
// topPlan). It writes nothing; the keys come from SCAN, hence
// allow-cross-slot-keys (a step only ever sees keys of the node it runs on).
var topScanScript = redis.NewScript(`#!lua flags=no-writes,allow-cross-slot-keys
local res = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])
local out = {res[1]}
local floor, zset = tonumber(ARGV[4]), ARGV[5] == 'z'
local targets = {}
for i = 6, #ARGV, 3 do
  targets[#targets + 1] = {ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])}
end
for _, k in ipairs(res[2]) do
  local from
  for _, t in ipairs(targets) do
    if #k > #t[1] + #t[2] and string.sub(k, 1, #t[1]) == t[1] and string.sub(k, -#t[2]) == t[2] then
      from = t[3]
      break
    end
  end
  if from then
    local c = 0
    if zset then
      c = redis.call('ZCOUNT', k, string.format('(%d', from), '+inf')
    else
      local h = redis.call('HGETALL', k)
      for i = 1, #h, 2 do
        local b = tonumber(h[i])
        if b and b >= from then c = c + tonumber(h[i + 1]) end
      end
    end
    if c >= floor then
      out[#out + 1] = k
      out[#out + 1] = c
    end
  end
end
return out`)

// topScanCount is how many keys one script step looks at: a few
// milliseconds of server time per call.
const topScanCount = 2000

// TopOnServer answers as Top does (same ranking, same ties broken by
// subject), but counts on the server: one script call per SCAN step walks
// the keys and counts their events, and returns only the keys that can
// still be in the top n. A million counter keys cost a few hundred calls
// and little client memory, where Top fetches every key name and reads
// every counter. It needs Redis 7 (script flags); on Cluster it runs on
// every master. Used by abusectl top.
func (r *Redis) TopOnServer(ctx context.Context, by TopBy, window time.Duration, n int) ([]TopEntry, error) {
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
	mode := "h"
	if zset {
		mode = "z"
	}
	var targetArgs []any
	for _, t := range targets {
		targetArgs = append(targetArgs, r.prefix+"{"+string(t.kind)+":", "}:"+t.suffix, t.from)
	}
	var mu sync.Mutex
	var all []TopEntry
	node := func(ctx context.Context, c redis.Scripter) error {
		var top []TopEntry
		floor := int64(1)
		cursor := "0"
		for {
			args := append([]any{cursor, pattern, topScanCount, floor, mode}, targetArgs...)
			res, err := topScanScript.Run(ctx, c, nil, args...).Slice()
			if err != nil {
				return err
			}
			if len(res) == 0 || len(res)%2 != 1 {
				return fmt.Errorf("top script: reply of %d elements", len(res))
			}
			next, ok := res[0].(string)
			if !ok {
				return fmt.Errorf("top script: cursor %v is not a string", res[0])
			}
			for i := 1; i < len(res); i += 2 {
				key, ok1 := res[i].(string)
				count, ok2 := res[i+1].(int64)
				if !ok1 || !ok2 {
					return fmt.Errorf("top script: bad pair %v %v", res[i], res[i+1])
				}
				if s, _, ok := r.topMatch(key, targets); ok {
					top = append(top, TopEntry{s, count})
				}
			}
			// Keep the node's n best: an entry cut here has n entries
			// before it in the final order, whatever comes later.
			if n > 0 && len(top) > 4*n+1000 {
				top = rankTop(top, n)
				floor = top[n-1].Count
			}
			if next == "0" {
				break
			}
			cursor = next
		}
		mu.Lock()
		defer mu.Unlock()
		all = append(all, top...)
		return nil
	}
	if cc, ok := r.client.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return node(ctx, c) })
	} else {
		err = node(ctx, r.client)
	}
	if err != nil {
		return nil, fmt.Errorf("top by %s: %w", by, err)
	}
	return rankTop(all, n), nil
}

package ratelimit

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// topScanScript is one SCAN step of TopOnServer, run on one node: it counts
// the events within the window of every key of the step and returns the
// next cursor followed by key, count pairs of only the keys whose count
// reaches ARGV[5] (the caller's current n-th best, or 1), so that the
// client parses the contenders instead of every key. It writes nothing;
// the keys come from SCAN, hence allow-cross-slot-keys (a step only ever
// sees keys of the node it runs on).
var topScanScript = redis.NewScript(`#!lua flags=no-writes,allow-cross-slot-keys
local res = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])
local out = {res[1]}
local from, floor = ARGV[4], tonumber(ARGV[5])
for _, k in ipairs(res[2]) do
  local c = redis.call('ZCOUNT', k, from, '+inf')
  if c >= floor then
    out[#out + 1] = k
    out[#out + 1] = c
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
// and little client memory, where Top fetches every key name and sends a
// ZCOUNT per key. It needs Redis 7 (script flags); on Cluster it runs on
// every master. Used by abusectl top.
func (r *Redis) TopOnServer(ctx context.Context, by TopBy, window time.Duration, n int) ([]TopEntry, error) {
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
	from := "(" + formatInt(now.Add(-window).UnixMicro())
	var mu sync.Mutex
	var all []TopEntry
	node := func(ctx context.Context, c redis.Scripter) error {
		var top []TopEntry
		floor := int64(1)
		cursor := "0"
		for {
			res, err := topScanScript.Run(ctx, c, nil, cursor, pattern, topScanCount, from, floor).Slice()
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
				if s, ok := r.subjectOfKey(key, suffix); ok {
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

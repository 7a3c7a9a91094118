package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Campaign counting: the same content sent by many accounts. A message's
// fingerprints (scoring computes them: body bands, link domains, link URLs)
// are each counted as a set of the distinct accounts that sent it within a
// window of the fingerprint's own. An account is counted once per
// fingerprint however often it sends it; the last time it did is what
// counts.

// CampaignMaxAccounts caps the accounts a fingerprint remembers (the oldest
// go first): counts never exceed it, so thresholds must stay below it.
const CampaignMaxAccounts = 128

// Fingerprint is one campaign fingerprint of a message.
type Fingerprint struct {
	// Key names it: kind and value, e.g. "body:1f2e3d4c5b6a7980",
	// "dom:example.com", "url:0123456789abcdef". It must not hold '{' or
	// '}' (it is the Redis key's hash tag).
	Key string
	// Window is how far back the accounts that sent it are counted (whole
	// milliseconds, at least one second).
	Window time.Duration
}

// CampaignCounter is implemented by the stores that count campaigns (Redis
// and Memory).
type CampaignCounter interface {
	// ObserveCampaign records that account sent a message with the
	// fingerprints and returns, per fingerprint, the number of distinct
	// accounts (this one included) that sent it within its window, at
	// most CampaignMaxAccounts. The Redis store makes one round trip.
	ObserveCampaign(ctx context.Context, account string, fps []Fingerprint) ([]int, error)
}

var (
	_ CampaignCounter = (*Redis)(nil)
	_ CampaignCounter = (*Memory)(nil)
)

// campaignScript records an account under every fingerprint key and
// returns each key's account count.
//
// KEYS: one sorted set per fingerprint (account -> last time, in
// microseconds of the server clock). ARGV: 1 account, 2 cap, 3 clock
// offset in microseconds (tests), then per key its window in
// microseconds. Members that left the window are dropped, then the
// oldest beyond the cap; the TTL is the window plus a second.
var campaignScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(ARGV[3])
local cap = tonumber(ARGV[2])
local out = {}
for i, key in ipairs(KEYS) do
  local w = tonumber(ARGV[3 + i])
  redis.call('ZADD', key, now, ARGV[1])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%d', now - w))
  local n = redis.call('ZCARD', key)
  if n > cap then
    redis.call('ZREMRANGEBYRANK', key, 0, n - cap - 1)
    n = cap
  end
  redis.call('PEXPIRE', key, math.ceil(w / 1000) + 1000)
  out[i] = n
end
return out
`)

// campaignKey returns the key of a fingerprint: PREFIX{fp:KEY}, a hash tag
// of its own, so that on Cluster the fingerprints spread over the slots
// and none shares an account's slot.
func (r *Redis) campaignKey(fp Fingerprint) string {
	return r.prefix + "{fp:" + fp.Key + "}"
}

// ObserveCampaign implements CampaignCounter in one round trip: one script
// call over every fingerprint key, or on Cluster one call per key in one
// pipeline (go-redis sends each node its share, in parallel). It is not
// counted by Stats nor by the circuit breaker, which belong to the
// check-and-charge call, but fails at once while the breaker is open.
func (r *Redis) ObserveCampaign(ctx context.Context, account string, fps []Fingerprint) ([]int, error) {
	if len(fps) == 0 {
		return nil, nil
	}
	if r.breaker.IsOpen() {
		return nil, fmt.Errorf("redis campaign count for account %q: %w (circuit breaker open)", account, ErrUnavailable)
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	head := []any{account, CampaignMaxAccounts, r.opts.offset().Microseconds()}
	var counts []int
	var err error
	if r.cluster {
		counts, err = r.observeSplit(ctx, head, fps)
	} else {
		keys := make([]string, len(fps))
		args := head
		for i, fp := range fps {
			keys[i] = r.campaignKey(fp)
			args = append(args, fp.Window.Microseconds())
		}
		var res []int64
		if res, err = campaignScript.Run(ctx, r.client, keys, args...).Int64Slice(); err == nil {
			counts, err = campaignCounts(res, len(fps))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("redis campaign count for account %q: %w: %w", account, ErrUnavailable, err)
	}
	return counts, nil
}

// observeSplit is ObserveCampaign on Cluster: one script call per
// fingerprint (each in its own slot) in one pipeline. Calls a master did
// not have the script for are sent again with EVAL (counting an account
// twice under a fingerprint changes nothing).
func (r *Redis) observeSplit(ctx context.Context, head []any, fps []Fingerprint) ([]int, error) {
	pipe := r.client.Pipeline()
	cmds := make([]*redis.Cmd, len(fps))
	args := func(fp Fingerprint) []any { return append(append([]any(nil), head...), fp.Window.Microseconds()) }
	for i, fp := range fps {
		cmds[i] = campaignScript.EvalSha(ctx, pipe, []string{r.campaignKey(fp)}, args(fp)...)
	}
	_, _ = pipe.Exec(ctx) // errors are looked at per call
	r.retryNoScript(ctx, cmds, campaignScript, func(i int) ([]string, []any) { return []string{r.campaignKey(fps[i])}, args(fps[i]) })
	counts := make([]int, len(fps))
	var errs error
	for i, c := range cmds {
		res, err := c.Int64Slice()
		if err == nil {
			var one []int
			if one, err = campaignCounts(res, 1); err == nil {
				counts[i] = one[0]
			}
		}
		if err != nil {
			errs = errors.Join(errs, fmt.Errorf("fingerprint %q: %w", fps[i].Key, err))
		}
	}
	if errs != nil {
		return nil, errs
	}
	return counts, nil
}

// campaignCounts checks a script reply's length.
func campaignCounts(res []int64, want int) ([]int, error) {
	if len(res) != want {
		return nil, fmt.Errorf("campaign script replied %d counts for %d fingerprints", len(res), want)
	}
	out := make([]int, want)
	for i, n := range res {
		out[i] = int(n)
	}
	return out, nil
}

package ratelimit

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/abusemilter/abusemilter/breaker"
	"github.com/abusemilter/abusemilter/identity"
)

//go:embed script.lua
var checkSource string

// checkScript is the one call per message; refundScript takes back the
// charges of a call (Cluster only, see Redis): per counter key (or the
// account's sending history, which has no "n"), ARGV holds the bucket
// the call charged and its cost. A bucket already gone (it left
// the window and was deleted, which took it off n) is left alone, one
// emptied is deleted, and nothing goes below zero.
var (
	checkScript  = redis.NewScript(checkSource)
	refundScript = redis.NewScript(`
for i, key in ipairs(KEYS) do
  local field, cost = ARGV[2 * i - 1], tonumber(ARGV[2 * i])
  local v = redis.call('HMGET', key, field, 'n')
  local have = tonumber(v[1])
  if have then
    local back = math.min(have, cost)
    if back == have then
      redis.call('HDEL', key, field)
    elseif back > 0 then
      redis.call('HINCRBY', key, field, -back)
    end
    if back > 0 and v[2] then
      redis.call('HINCRBY', key, 'n', -math.min(back, tonumber(v[2]) or 0))
    end
  end
end
return 0`)
)

// openLockTTL bounds the life of a lock without an end: every key has a TTL.
const openLockTTL = 365 * 24 * time.Hour

// RedisOptions select and tune the connection to Redis.
type RedisOptions struct {
	// URL is redis://[user@]host:port[/db] or rediss:// (TLS). It must not
	// carry a password: set Password.
	URL string
	// Addrs are Cluster seed nodes, or Sentinel addresses with MasterName.
	Addrs      []string
	MasterName string
	Cluster    bool
	Username   string
	Password   string // never logged, never in an error
	// TLS, when set, is used for every connection (rediss:// sets a default).
	TLS *tls.Config
	// KeyPrefix starts every key (default "am:").
	KeyPrefix string
	// Timeout bounds each call, dial included (default 200ms).
	Timeout time.Duration
}

// Redis is the shared store: counters and account state in Redis, so every
// milter of a provider sees the same counts, locks, overrides and
// exemptions. It is safe for concurrent use.
//
// Each message costs one round trip: one Lua script (EVALSHA, EVAL when the
// server lost it) reads the account's lock and exemptions, checks every
// applicable limit against the server's clock and charges all of them only
// if none is exceeded, or adds a strike. Counters are the bucketed sliding
// windows of window.go: "at most N within any window of length W", with
// memory bounded per counter whatever the traffic.
//
// Keys are readable and share the prefix; each subject's keys carry one
// hash tag, {kind:name}:
//
//   - PREFIX{kind:name}:SUFFIX:WINDOW, a hash: the counter of one window of
//     one dimension (SUFFIX msgs, rcpts or newrcpts; WINDOW as FormatWindow
//     writes it), e.g. am:{acct:alice@example.com}:msgs:1h,
//     am:{acct:alice@example.com}:rcpts:10m, am:{acct:alice@example.com}:newrcpts:24h,
//     am:{sender:a@b.example}:msgs:1h, am:{client:192.0.2.1}:msgs:1h. Field
//     "<i>" (decimal) holds what was charged in bucket i, [i*B, (i+1)*B)
//     in microseconds of the server clock with B = bucketWidth(W); "n" is the
//     sum of the bucket fields stored and "lo" a lower bound of the oldest
//     one. Buckets that left the window are deleted when the counter is
//     next charged, so a counter holds at most BucketsPerWindow+1 of them.
//     Each charge sets its TTL to W + B plus a second. A runtime override
//     with a window the configuration lacks gets a counter of its own.
//   - PREFIX{acct:name}:seen, a sorted set: recipients of the account
//     scored by when it last sent to them (new recipients).
//   - PREFIX{fp:KIND:VALUE}, a sorted set: the accounts that sent a
//     campaign fingerprint (campaign.go), scored by when each last did, e.g.
//     am:{fp:body:1f2e3d4c5b6a7980}, am:{fp:dom:example.com},
//     am:{fp:url:0123456789abcdef}; members older than the fingerprint's
//     window are dropped when it is next seen, at most CampaignMaxAccounts
//     are kept, and its TTL is the window plus a second. About 120 bytes
//     (MEMORY USAGE) with one account, 40 more per account. Each
//     fingerprint has a hash tag of its own: on Cluster they spread over
//     the slots, never in an account's.
//   - PREFIX{acct:name}:sent, a hash: messages sent per clock hour, field
//     "<hour>" (server microseconds / 3600e6), the last 48 hours (see
//     history.go): about 500 bytes (MEMORY USAGE 472 for 48 hours, 64 for
//     one) for an account that sends every hour; one HINCRBY per message.
//   - PREFIX{acct:name}:decisions, a list: the queue ids of the account's
//     newest 50 decision records (held, deferred, rejected): about 950
//     bytes when full, only for accounts with such messages within the
//     retention; PREFIX decisions, the newest 2000 of every account.
//   - PREFIX{audit}:log, a list: the audit log of every subject (JSON,
//     newest first, the newest 10000), in a slot of its own.
//   - PREFIX{acct:name}:strikes (sorted set), :lock (hash), :audit (list),
//     PREFIX{kind:name}:override (hash of "LIMIT:WINDOW_US,...|UNTIL_US" per
//     SUFFIX) and :exempt (JSON string).
//
// On a single node or behind Sentinel one script call covers every subject,
// so a message is charged everywhere or nowhere. The script builds the
// counter keys of the windows in force from the stems it is given (the
// windows may come from a runtime override): on Cluster that is allowed
// because they share the stem's hash tag, hence its slot.
// On Cluster the subjects live in different slots: the store sends one
// script call per subject in a single pipeline (still one round trip). Each
// call checks and charges its own subject; when any of them refuses (or
// finds an exemption), the charges the others made are taken back by a
// follow-up call made in the background (the cost is taken off the bucket
// the call charged, found from the time in its reply), and the refusal's
// strike is added then. So a refusal never leaves a charge behind for longer
// than that follow-up takes, and no limit ever admits more than it allows:
// the only error is a brief over-count of at most one message per refused
// message in flight.
//
// Recent serves refusals this instance saw without asking Redis. Admin
// changes (Lock, Unlock, Reset, SetOverride, Exempt, Unexempt) reach every
// instance's cache at once: each is published, once saved, on the channel
// "<prefix>admin" (e.g. am:admin) as the subject it changed ("acct:alice",
// "sender:a@b.example", "client:192.0.2.1"). Every instance subscribes to
// that channel on a connection of its own, started by NewRedis and stopped
// by Close, and drops the account's cached refusal (every cached refusal
// for a sender or client subject, or for a message it cannot read). A
// refusal read from Redis before a change that came in meanwhile is not
// cached. The per-message path never waits for the subscription. On
// Cluster, PUBLISH reaches subscribers on every node.
//
// After a lost connection (Redis restarted, failover) go-redis dials and
// subscribes again by itself; a subscription silent for 5s is pinged, and
// one that does not answer within 5s more is replaced. Until the
// subscription is confirmed (at start, and while Redis is unreachable)
// Recent serves a refusal for at most Options.RecentUnsubscribedMax (5s),
// and on confirmation every cached refusal is dropped, since a change may
// have been missed meanwhile. Subscribed tells which state holds.
type Redis struct {
	client  redis.UniversalClient
	cluster bool
	prefix  string
	timeout time.Duration
	policy  Policy
	opts    Options

	stats   callStats
	breaker *breaker.Breaker
	recent  recentCache
	events  *eventQueue
	sub     *subscriber
	// deskWake is signalled when a desk request for this instance is
	// announced (see NextDeskRequests).
	deskWake chan struct{}

	follow sync.WaitGroup // background refunds
}

var (
	_ Limiter = (*Redis)(nil)
	_ Admin   = (*Redis)(nil)
)

// RedisPoolSize is the most connections a Redis store opens to one Redis
// node for its calls (10 per GOMAXPROCS, go-redis' default pool size); the
// admin channel's subscription adds one connection to one node.
func RedisPoolSize() int { return 10 * runtime.GOMAXPROCS(0) }

// NewRedis connects to Redis as ro says. It does not wait for the server:
// a Redis that is down at start is a Redis that is down, handled by the fail
// mode until it answers.
func NewRedis(ro RedisOptions, policy Policy, opts Options) (*Redis, error) {
	if ro.Timeout <= 0 {
		ro.Timeout = 200 * time.Millisecond
	}
	uo := &redis.UniversalOptions{
		Addrs:      ro.Addrs,
		MasterName: ro.MasterName,
		Username:   ro.Username,
		Password:   ro.Password,
		TLSConfig:  ro.TLS,
		// The mail path cannot wait: fail within the deadline, never retry
		// (the breaker and the fail mode decide), keep pool waits short.
		DialTimeout:     ro.Timeout,
		ReadTimeout:     ro.Timeout,
		WriteTimeout:    ro.Timeout,
		PoolTimeout:     ro.Timeout,
		MaxRetries:      -1,
		MaxRedirects:    3,
		DisableIdentity: true,
		IsClusterMode:   ro.Cluster,
		// A fixed ceiling of connections per Redis node, so that a
		// provider can size Redis' maxclients: go-redis opens connections
		// beyond PoolSize when the pool is busy unless MaxActiveConns
		// says otherwise, and runs pipelines (the Cluster call, the
		// Message-ID record beside the rate call) on a second pool of its
		// own. One pool of RedisPoolSize, the pub/sub connection of the
		// admin channel beside it; a call that finds the pool busy waits
		// at most PoolTimeout, and the fail mode decides.
		PoolSize:         RedisPoolSize(),
		MaxActiveConns:   RedisPoolSize(),
		PipelinePoolSize: -1,
	}
	if ro.URL != "" {
		o, err := redis.ParseURL(ro.URL)
		if err != nil {
			return nil, fmt.Errorf("redis url: %w", redactErr(err, ro.URL))
		}
		if o.Password != "" {
			return nil, errors.New("redis url: must not contain a password (set it apart)")
		}
		uo.Addrs, uo.DB = []string{o.Addr}, o.DB
		if uo.Username == "" {
			uo.Username = o.Username
		}
		if uo.TLSConfig == nil {
			uo.TLSConfig = o.TLSConfig
		}
	}
	if len(uo.Addrs) == 0 {
		return nil, errors.New("redis: no url and no addrs")
	}
	client := redis.NewUniversalClient(uo)
	return NewRedisClient(client, ro.KeyPrefix, ro.Timeout, policy, opts), nil
}

// redactErr drops a URL's text from an error that might quote it.
func redactErr(err error, url string) error {
	return errors.New(strings.ReplaceAll(err.Error(), url, "<url>"))
}

// NewRedisClient wraps an existing client (tests, or a caller that builds
// its own) and subscribes to admin changes. Close closes the client.
func NewRedisClient(client redis.UniversalClient, prefix string, timeout time.Duration, policy Policy, opts Options) *Redis {
	if prefix == "" {
		prefix = "am:"
	}
	if timeout <= 0 {
		timeout = 200 * time.Millisecond
	}
	opts = opts.withDefaults()
	r := &Redis{client: client, prefix: prefix, timeout: timeout, policy: policy, opts: opts, deskWake: make(chan struct{}, 1)}
	_, r.cluster = client.(*redis.ClusterClient)
	r.breaker = breaker.New(opts.BreakerFailures, opts.BreakerProbe)
	r.events = newEventQueue(opts.OnEvent, &r.stats)
	r.recent.unconfirmedMax = opts.RecentUnsubscribedMax
	r.sub = startSubscriber(r)
	return r
}

// Client returns the underlying client (tests and diagnostics).
func (r *Redis) Client() redis.UniversalClient { return r.client }

// Stats returns the call counters.
func (r *Redis) Stats() Stats { return r.stats.snapshot(r.breaker.IsOpen()) }

// Subscribed reports whether the subscription to admin changes is confirmed
// now (see Redis); while it is not, Recent serves a refusal for at most
// Options.RecentUnsubscribedMax.
func (r *Redis) Subscribed() bool { return r.recent.isConfirmed() }

// Close stops the subscription to admin changes, waits for background
// follow-ups, stops event delivery and closes the connections.
func (r *Redis) Close() error {
	r.sub.close()
	r.follow.Wait()
	r.events.close()
	return r.client.Close()
}

// Recent implements Limiter.
func (r *Redis) Recent(account string) (Decision, bool) {
	return r.recent.get(account, time.Now())
}

// base returns the hash-tagged key stem of a subject.
func (r *Redis) base(s Subject) string {
	return r.prefix + "{" + string(s.Kind) + ":" + s.Name + "}"
}

// counterKey returns the key of the counter of window w of dimension d of a
// subject, e.g. am:{acct:alice}:msgs:1h.
func (r *Redis) counterKey(s Subject, d Dimension, w time.Duration) string {
	return r.base(s) + ":" + d.logSuffix() + ":" + FormatWindow(w)
}

// scriptRates writes rates as the script reads them:
// "LIMIT:WINDOW_US:WINDOW_TEXT,...", the text naming the window's counter.
func scriptRates(rates []Rate) string {
	var b strings.Builder
	for i, rt := range rates {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(formatInt(rt.Limit))
		b.WriteByte(':')
		b.WriteString(formatInt(rt.Window.Microseconds()))
		b.WriteByte(':')
		b.WriteString(FormatWindow(rt.Window))
	}
	return b.String()
}

// subjectKeys returns a subject's keys in the layout the script expects
// (for counters, the stem their window's text is appended to).
func (r *Redis) subjectKeys(s Subject) []string {
	b := r.base(s)
	switch s.Kind {
	case KindAccount:
		return []string{b + ":msgs", b + ":rcpts", b + ":newrcpts", b + ":seen", b + ":strikes", b + ":lock", b + ":override", b + ":exempt"}
	case KindSender:
		return []string{b + ":msgs", b + ":override", b + ":exempt"}
	}
	return []string{b + ":msgs", b + ":exempt"}
}

// scriptSubject is one subject of a call with its configured rates.
type scriptSubject struct {
	subj  Subject
	rates [][]Rate // configured, per dimension of the kind (Kind.dimensions order)
}

// subjects lists what a request is counted against. When a configured
// exemption covers it, only the account is listed, with no limits: an
// exempt account is never counted or refused by a limit, but its lock and
// strikes still apply.
func (p *Policy) subjects(req Request) (subs []scriptSubject, sender string, exempt bool) {
	sender = identity.NormalizeAddress(req.Sender)
	if p.ExemptAccounts[req.Account] || (sender != "" && p.ExemptSenders[sender]) || p.ExemptClient(req.Client) {
		acct := scriptSubject{subj: Account(req.Account)}
		acct.rates = make([][]Rate, len(KindAccount.dimensions()))
		return []scriptSubject{acct}, sender, true
	}
	add := func(s Subject) {
		ss := scriptSubject{subj: s}
		for _, d := range s.Kind.dimensions() {
			ss.rates = append(ss.rates, p.RatesFor(d, req.Account, sender))
		}
		subs = append(subs, ss)
	}
	add(Account(req.Account))
	if sender != "" {
		add(Subject{KindSender, sender})
	}
	if !req.Authenticated && req.Client.IsValid() {
		add(Client(req.Client))
	}
	return subs, sender, false
}

func normalizeAll(addrs []string) []string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = identity.NormalizeAddress(a)
	}
	return out
}

func newCallID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// CheckAndCharge implements Limiter.
func (r *Redis) CheckAndCharge(ctx context.Context, req Request) (Decision, error) {
	subs, _, exempt := r.policy.subjects(req)
	start := time.Now()
	if !r.breaker.Allow(start) {
		r.stats.calls.Add(1)
		r.stats.errors.Add(1)
		r.stats.failFast.Add(1)
		return Decision{}, fmt.Errorf("redis check for account %q: %w (circuit breaker open)", req.Account, ErrUnavailable)
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	d, err := r.call(ctx, req, subs, r.recent.generation())
	elapsed := time.Since(start)
	r.stats.observe(elapsed, err)
	if r.breaker.Done(time.Now(), err == nil) {
		r.stats.opens.Add(1)
	}
	if err != nil {
		return Decision{}, fmt.Errorf("redis check for account %q: %w: %w", req.Account, ErrUnavailable, err)
	}
	d.Exempt = d.Exempt || (exempt && d.Allowed)
	return d, nil
}

// header writes the fixed ARGV of a call.
func (r *Redis) header(req Request, callID string, strikeOnRefusal bool, nsubs int) []any {
	mode := "charge"
	if req.Outcome == Strike {
		mode = "strike"
	}
	sp := r.policy.Strikes
	return []any{mode, callID, r.opts.offset().Microseconds(), req.MessageID,
		sp.Threshold, sp.Window.Microseconds(), sp.LockFor.Microseconds(), boolArg(req.Monitor),
		boolArg(strikeOnRefusal), openLockTTL.Milliseconds(), nsubs, FormatWindow(sp.Window)}
}

func boolArg(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// appendSubject adds a subject's keys and arguments to a call.
func (r *Redis) appendSubject(keys []string, args []any, s scriptSubject) ([]string, []any) {
	keys = append(keys, r.subjectKeys(s.subj)...)
	args = append(args, string(s.subj.Kind[0]))
	for _, rt := range s.rates {
		args = append(args, scriptRates(rt))
	}
	return keys, args
}

func appendRecipients(args []any, rcpts []string) []any {
	args = append(args, len(rcpts))
	for _, rc := range rcpts {
		args = append(args, rc)
	}
	return args
}

// call makes the round trip: one script call, or on Cluster one per subject
// in one pipeline.
// gen is the Recent generation read before the call.
func (r *Redis) call(ctx context.Context, req Request, subs []scriptSubject, gen uint64) (Decision, error) {
	callID := newCallID()
	rcpts := normalizeAll(req.Recipients)
	if !r.cluster || req.Outcome == Strike {
		if req.Outcome == Strike {
			subs = subs[:1] // strikes and locks live with the account
		}
		keys, args := []string(nil), r.header(req, callID, true, len(subs))
		for _, s := range subs {
			keys, args = r.appendSubject(keys, args, s)
		}
		args = appendRecipients(args, rcpts)
		if k, rec, ttl, ok := r.attribution(req); ok {
			keys, args = append(keys, k), append(args, recordPrefix(rec), ttl.Milliseconds())
		}
		res, err := checkScript.Run(ctx, r.client, keys, args...).Slice()
		if err != nil {
			return Decision{}, err
		}
		rep, err := parseReply(res)
		if err != nil {
			return Decision{}, err
		}
		return r.decide(req, subs, []reply{rep}, gen), nil
	}
	// One pipeline, one call per subject (each in its own slot).
	pipe := r.client.Pipeline()
	cmds := make([]*redis.Cmd, len(subs))
	argv := make([][]any, len(subs))
	keyv := make([][]string, len(subs))
	for i, s := range subs {
		keys, args := r.appendSubject(nil, r.header(req, callID, false, 1), s)
		if s.subj.Kind == KindAccount {
			args = appendRecipients(args, rcpts)
		} else {
			args = appendRecipients(args, nil)
		}
		keyv[i], argv[i] = keys, args
		cmds[i] = checkScript.EvalSha(ctx, pipe, keys, args...)
	}
	// The Message-ID record lives in a slot of its own: written beside the
	// calls, in the same round trip, without the usage (a refused message's
	// record is replaced by its decision record).
	if k, rec, ttl, ok := r.attribution(req); ok {
		rec.At = time.Now().Add(r.opts.offset())
		pipe.Set(ctx, k, encodeRecord(rec), ttl)
	}
	_, _ = pipe.Exec(ctx) // errors are looked at per call
	r.retryNoScript(ctx, cmds, checkScript, func(i int) ([]string, []any) { return keyv[i], argv[i] })
	return r.splitDecision(req, subs, callID, cmds, gen)
}

func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

// retryNoScript sends again, with EVAL in one more pipeline, the calls of
// a pipeline of EVALSHA that a master answered NOSCRIPT (it did not know
// the script yet: first use, or after a restart), and puts their answers
// in cmds. Only those are sent again, so that nothing is counted twice.
// call gives the keys and arguments of call i.
func (r *Redis) retryNoScript(ctx context.Context, cmds []*redis.Cmd, script *redis.Script, call func(i int) ([]string, []any)) {
	var retry redis.Pipeliner
	for i, c := range cmds {
		if isNoScript(c.Err()) {
			if retry == nil {
				retry = r.client.Pipeline()
			}
			keys, args := call(i)
			cmds[i] = script.Eval(ctx, retry, keys, args...)
		}
	}
	if retry != nil {
		_, _ = retry.Exec(ctx) // errors are looked at per call
	}
}

// splitDecision combines the per-slot replies of a Cluster call and starts
// the follow-up for a refusal.
func (r *Redis) splitDecision(req Request, subs []scriptSubject, callID string, cmds []*redis.Cmd, gen uint64) (Decision, error) {
	reps := make([]reply, len(cmds))
	var callErr error
	for i, c := range cmds {
		res, err := c.Slice()
		if err == nil {
			reps[i], err = parseReply(res)
		}
		if err != nil {
			reps[i].status = "error"
			callErr = errors.Join(callErr, err)
		}
		reps[i].subject = i
	}
	if callErr != nil {
		// Some slot did not answer: take back what the others charged (the
		// caller applies its fail mode).
		r.followUp(req, subs, callID, reps, false)
		return Decision{}, callErr
	}
	d := r.decide(req, subs, reps, gen)
	if !d.Allowed || d.Exempt {
		r.followUp(req, subs, callID, reps, !d.Exempt)
	}
	return d, nil
}

// followUp takes back the charges of a split call that was refused (or
// exempted elsewhere) and adds the refusal's strike, in the background.
func (r *Redis) followUp(req Request, subs []scriptSubject, callID string, reps []reply, addStrike bool) {
	r.follow.Add(1)
	go func() {
		defer r.follow.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 5*r.timeout)
		defer cancel()
		pipe := r.client.Pipeline()
		for _, rep := range reps {
			if rep.status != "ok" {
				continue
			}
			keys, args := r.refundArgs(subs[rep.subject].subj, rep)
			if addStrike {
				keys, args = r.refundSent(keys, args, subs[rep.subject].subj, rep)
			}
			if len(keys) > 0 {
				refundScript.Eval(ctx, pipe, keys, args...)
			}
		}
		if addStrike && reps[0].status != "locked" {
			sreq := req
			sreq.Outcome = Strike
			keys, args := r.appendSubject(nil, r.header(sreq, callID, false, 1), subs[0])
			args = appendRecipients(args, nil)
			checkScript.Eval(ctx, pipe, keys, args...)
		}
		_, _ = pipe.Exec(ctx) // best effort: a lost refund only over-counts
	}()
}

// refundArgs returns the keys and arguments of refundScript that take back
// what a call charged subject s (rep, its "ok" reply): per counter, the
// bucket of the call's time (the server time of that call) and the cost.
// Two rates of one window share a counter, charged once.
func (r *Redis) refundArgs(s Subject, rep reply) (keys []string, args []any) {
	nowUS := rep.now.UnixMicro()
	seen := map[string]bool{}
	for _, u := range rep.usage {
		key := r.counterKey(s, u.dim, u.rate.Window)
		if u.cost <= 0 || seen[key] {
			continue
		}
		seen[key] = true
		keys = append(keys, key)
		args = append(args, formatInt(bucketOf(nowUS, bucketWidth(u.rate.Window))), u.cost)
	}
	return keys, args
}

// reply is a parsed script reply.
type reply struct {
	subject                int
	status                 string
	now                    time.Time
	strikes                int
	newlyLocked, wouldLock bool
	lock                   *Lock
	exceeded               Dimension
	exceededSubject        int
	rate                   Rate
	retry                  time.Duration
	usage                  []replyUsage
}

type replyUsage struct {
	subject int
	dim     Dimension
	rate    Rate
	used    int64
	cost    int64
}

var scriptDims = map[string]Dimension{"msgs": AccountMessages, "rcpts": AccountRecipients, "newrcpts": AccountNewRecipients}

func usToTime(us int64) time.Time { return time.UnixMicro(us) }

// parseReply reads a script reply, checking every element's type.
func parseReply(res []any) (reply, error) {
	var rep reply
	bad := func(i int) error { return fmt.Errorf("unexpected script reply %v (element %d)", res, i) }
	str := func(i int) (string, bool) {
		if i >= len(res) {
			return "", false
		}
		s, ok := res[i].(string)
		return s, ok
	}
	num := func(i int) (int64, bool) {
		if i >= len(res) {
			return 0, false
		}
		n, ok := res[i].(int64)
		return n, ok
	}
	var ok bool
	if rep.status, ok = str(0); !ok {
		return rep, bad(0)
	}
	for i := 1; i <= 4; i++ {
		if _, ok := num(i); !ok {
			return rep, bad(i)
		}
	}
	now, _ := num(1)
	strikes, _ := num(2)
	newly, _ := num(3)
	would, _ := num(4)
	rep.now, rep.strikes, rep.newlyLocked, rep.wouldLock = usToTime(now), int(strikes), newly == 1, would == 1
	switch rep.status {
	case "locked":
		reason, ok1 := str(5)
		by, ok2 := str(6)
		at, ok3 := num(7)
		until, ok4 := num(8)
		if !ok1 || !ok2 || !ok3 || !ok4 {
			return rep, bad(5)
		}
		rep.lock = &Lock{Reason: reason, By: by, At: usToTime(at)}
		if until > 0 {
			rep.lock.Until = usToTime(until)
		}
	case "exempt", "strike":
	case "over":
		idx, ok1 := num(5)
		dim, ok2 := str(6)
		limit, ok3 := num(7)
		window, ok4 := num(8)
		retry, ok5 := num(9)
		if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 {
			return rep, bad(5)
		}
		rep.exceededSubject, rep.exceeded = int(idx), scriptDims[dim]
		rep.rate = Rate{Limit: limit, Window: time.Duration(window) * time.Microsecond}
		rep.retry = time.Duration(retry) * time.Microsecond
	case "ok":
		for i := 5; i+5 < len(res); i += 6 {
			idx, ok1 := num(i)
			dim, ok2 := str(i + 1)
			limit, ok3 := num(i + 2)
			window, ok4 := num(i + 3)
			used, ok5 := num(i + 4)
			cost, ok6 := num(i + 5)
			if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 {
				return rep, bad(i)
			}
			rep.usage = append(rep.usage, replyUsage{int(idx), scriptDims[dim], Rate{limit, time.Duration(window) * time.Microsecond}, used, cost})
		}
	default:
		return rep, bad(0)
	}
	return rep, nil
}

// dimensionOf maps a script dimension of a subject kind to a Dimension.
func dimensionOf(kind SubjectKind, d Dimension) Dimension {
	switch kind {
	case KindSender:
		return SenderMessages
	case KindClient:
		return ClientMessages
	}
	return d
}

// decide turns replies (one, or one per subject on Cluster) into a Decision,
// fills the Recent cache (unless an admin change came in since generation
// gen) and raises events.
func (r *Redis) decide(req Request, subs []scriptSubject, reps []reply, gen uint64) Decision {
	var d Decision
	subjectOf := func(rep reply, idx int) Subject {
		if len(reps) > 1 {
			return subs[rep.subject].subj
		}
		return subs[idx].subj
	}
	acct := reps[0]
	now := acct.now
	d.Strikes = acct.strikes
	d.NewlyLocked, d.WouldLock = acct.newlyLocked, acct.wouldLock
	switch {
	case acct.status == "locked":
		d.Locked, d.Lock = true, acct.lock
		if acct.lock.Until.After(now) {
			d.RetryAfter = acct.lock.Until.Sub(now)
		}
	case acct.status == "strike":
	default:
		for _, rep := range reps {
			if rep.status == "exempt" {
				return Decision{Allowed: true, Exempt: true}
			}
		}
		for _, rep := range reps {
			if rep.status == "over" {
				s := subjectOf(rep, rep.exceededSubject)
				d.Exceeded, d.Rate, d.RetryAfter = dimensionOf(s.Kind, rep.exceeded), rep.rate, rep.retry
				break
			}
		}
		if d.Exceeded == "" {
			d.Allowed = true
			for _, rep := range reps {
				for _, u := range rep.usage {
					s := subjectOf(rep, u.subject)
					us := Usage{Dimension: dimensionOf(s.Kind, u.dim), Key: s.Name, Rate: u.rate, Used: u.used}
					d.Usage = append(d.Usage, us)
					usageEvents(r.events, r.opts.UsageThresholds, s, us, u.cost, now)
				}
			}
		}
	}
	if d.NewlyLocked {
		lk := &Lock{Reason: strikeReason(d.Strikes, r.policy.Strikes.Window), By: "auto", At: now}
		if r.policy.Strikes.LockFor > 0 {
			lk.Until = now.Add(r.policy.Strikes.LockFor)
		}
		d.Lock = lk
		r.events.emit(Event{Kind: EventLock, Subject: Account(req.Account), Lock: lk, Strikes: d.Strikes, At: now})
	}
	if d.WouldLock {
		r.events.emit(Event{Kind: EventWouldLock, Subject: Account(req.Account), Strikes: d.Strikes, At: now})
	}
	if d.Locked || d.Exceeded != "" {
		r.recent.remember(req.Account, d, time.Now(), r.opts.RecentMax, gen)
	}
	return d
}

// serverNow reads the Redis clock (plus the test offset).
func (r *Redis) serverNow(ctx context.Context) (time.Time, error) {
	t, err := r.client.Time(ctx).Result()
	if err != nil {
		return time.Time{}, fmt.Errorf("redis time: %w", err)
	}
	return t.Add(r.opts.offset()), nil
}

func formatInt(n int64) string { return strconv.FormatInt(n, 10) }

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/abusemilter/abusemilter/internal/testutil/redistest"
	"github.com/abusemilter/abusemilter/ratelimit"
)

var (
	fullTop = flag.Bool("ctl.full", false, "run the top benchmark on a Redis pre-filled with 1,000,000 counter keys")
	topKeys = flag.Int("ctl.keys", 1_000_000, "how many counter keys the -ctl.full benchmark pre-fills")
)

// prefill is a synthetic keyspace: per counter key, how many events fall
// within the last hour (recent) and how many are older (old, outside a 1h
// window). Keys are written with the store's documented layout (the Redis
// type's doc comment): PREFIX{kind:name}:msgs:1h or :rcpts:1h, hashes of
// bucket index -> count (buckets of a 60th of the window on the server
// clock), plus n, the sum, and lo, the oldest bucket. The old events sit in
// a bucket that has left the window but is not deleted yet, as in a counter
// not charged since. checkLayout proves the store uses this layout.
type prefill struct {
	subjects []ratelimit.Subject
	suffix   []string // "msgs" or "rcpts" (the window's text is added)
	recent   []int
	old      []int
}

// makePrefill builds n keys: 80% message counters of accounts, senders and
// clients, 20% recipient counters of accounts, with counts spread so that
// the ranking has many ties (broken by subject name).
func makePrefill(n int) *prefill {
	p := &prefill{}
	for i := range n {
		var s ratelimit.Subject
		suffix := "msgs"
		switch i % 10 {
		case 0, 1, 2, 3:
			s = ratelimit.Account(fmt.Sprintf("user%07d", i))
		case 4, 5:
			s = ratelimit.Subject{Kind: ratelimit.KindSender, Name: fmt.Sprintf("s%07d@example.com", i)}
		case 6, 7:
			s = ratelimit.Subject{Kind: ratelimit.KindClient, Name: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)}
		default:
			s, suffix = ratelimit.Account(fmt.Sprintf("user%07d", i-4)), "rcpts"
		}
		p.subjects = append(p.subjects, s)
		p.suffix = append(p.suffix, suffix)
		p.recent = append(p.recent, (i*7919)%23)
		p.old = append(p.old, i%3)
	}
	return p
}

// expected returns the top n of a suffix, ranked as Top documents: by
// count, then by subject.
func (p *prefill) expected(suffix string, n int) []topEntryJSON {
	var out []topEntryJSON
	for i, s := range p.subjects {
		if p.suffix[i] == suffix && p.recent[i] > 0 {
			out = append(out, topEntryJSON{Subject: s.String(), Kind: string(s.Kind), Name: s.Name, Count: int64(p.recent[i])})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Subject < out[j].Subject
	})
	if len(out) > n {
		out = out[:n]
	}
	for i := range out {
		out[i].Rank = i + 1
	}
	return out
}

// topWindowText is the counter window the prefill writes and top ranks:
// the hour of topConfig.
const topWindowText = "1h"

// bucketUS is the bucket width of a 1h counter, in microseconds.
const bucketUS = int64(time.Hour/time.Microsecond) / ratelimit.BucketsPerWindow

// write fills redis through pipelines of HSETs. The recent events are
// split over two buckets (10 and 30 minutes ago).
func (p *prefill) write(t testing.TB, addr, prefix string) {
	t.Helper()
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: addr, ReadTimeout: time.Minute, WriteTimeout: time.Minute})
	defer c.Close()
	now, err := c.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	bucket := func(ago time.Duration) int64 { return now.Add(-ago).UnixMicro() / bucketUS }
	recent1, recent2, old := bucket(10*time.Minute), bucket(30*time.Minute), bucket(2*time.Hour)
	pipe := c.Pipeline()
	flush := func() {
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatalf("prefill: %v", err)
		}
	}
	for i, s := range p.subjects {
		if p.recent[i]+p.old[i] == 0 {
			continue
		}
		fields := map[string]any{"n": p.recent[i] + p.old[i], "lo": recent2}
		if half := p.recent[i] / 2; half > 0 {
			fields[strconv.FormatInt(recent2, 10)] = half
		}
		if rest := p.recent[i] - p.recent[i]/2; rest > 0 {
			fields[strconv.FormatInt(recent1, 10)] = rest
		}
		if p.old[i] > 0 {
			fields[strconv.FormatInt(old, 10)] = p.old[i]
			fields["lo"] = old
		}
		pipe.HSet(ctx, prefix+"{"+string(s.Kind)+":"+s.Name+"}:"+p.suffix[i]+":"+topWindowText, fields)
		if pipe.Len() >= 2000 {
			flush()
		}
	}
	flush()
}

// topConfig is testConfig with every dimension top ranks limited within
// the hour (top reads the counters of the limits in force).
var topConfig = strings.Replace(testConfig, "  account_recipients: [\"20/1h\"]\n",
	"  account_recipients: [\"20/1h\"]\n  sender_messages: [\"1000/1h\"]\n  client_messages: [\"1000/1h\"]\n", 1)

// checkLayout charges one real message through the store and checks that
// it lands in the keys and fields the prefill writes, so that the prefill
// cannot drift from the store's layout unnoticed.
func checkLayout(t testing.TB, e *env, srv *redistest.Server, prefix string) {
	t.Helper()
	if topConfig == testConfig {
		t.Fatalf("topConfig adds no sender and client limits: testConfig changed")
	}
	lim, ok := e.admin.(ratelimit.Limiter)
	if !ok {
		t.Fatalf("the admin store is not a limiter")
	}
	before, err := srv.Do("TIME")
	if err != nil {
		t.Fatal(err)
	}
	d, err := lim.CheckAndCharge(context.Background(), ratelimit.Request{
		Account: "layoutcheck", Sender: "layout@example.com", Client: netip.MustParseAddr("192.0.2.9"),
		Recipients: []string{"x@dest.example"},
	})
	if err != nil || !d.Allowed {
		t.Fatalf("charge: %v %+v", err, d)
	}
	after, err := srv.Do("TIME")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"{acct:layoutcheck}:msgs:", "{acct:layoutcheck}:rcpts:", "{sender:layout@example.com}:msgs:", "{client:192.0.2.9}:msgs:"} {
		k = prefix + k + topWindowText
		out, err := srv.Do("HGETALL", k)
		if err != nil {
			t.Fatal(err)
		}
		h := map[string]string{}
		f := strings.Split(out, "\n")
		for i := 0; i+1 < len(f); i += 2 {
			h[f[i]] = f[i+1]
		}
		lo, err := strconv.ParseInt(h["lo"], 10, 64)
		if err != nil || len(h) != 3 || h["n"] != "1" || h[h["lo"]] != "1" || lo < timeUS(t, before)/bucketUS || lo > timeUS(t, after)/bucketUS {
			t.Fatalf("the store wrote %q as %v: the prefill layout is stale", k, h)
		}
	}
	for _, s := range []ratelimit.Subject{ratelimit.Account("layoutcheck"), ratelimit.Sender("layout@example.com"), ratelimit.Client(netip.MustParseAddr("192.0.2.9"))} {
		if err := e.admin.Reset(context.Background(), s, "", "test"); err != nil {
			t.Fatal(err)
		}
	}
}

// timeUS reads the reply of TIME (seconds and microseconds on two lines).
func timeUS(t testing.TB, out string) int64 {
	t.Helper()
	sec, us, _ := strings.Cut(strings.TrimSpace(out), "\n")
	s, err1 := strconv.ParseInt(sec, 10, 64)
	u, err2 := strconv.ParseInt(us, 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("TIME reply %q", out)
	}
	return s*1_000_000 + u
}

func topOf(t testing.TB, e *env, by string, n int) topJSON {
	t.Helper()
	var out bytes.Buffer
	if err := runTop(context.Background(), topOptions{Env: e, By: by, Window: time.Hour, N: n, JSON: true}, &out); err != nil {
		t.Fatalf("top: %v", err)
	}
	var v topJSON
	if err := json.Unmarshal(out.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestTopOnPrefilledRedis(t *testing.T) {
	srv := redistest.Start(t)
	e := connectEnv(t, globalOptions{ConfigPath: writeConfig(t, topConfig, srv.Addr()), Timeout: 10 * time.Second})
	checkLayout(t, e, srv, "t:")
	p := makePrefill(20000)
	p.write(t, srv.Addr(), "t:")
	// Keys of another prefix share the server: they must not count.
	other := makePrefill(50)
	other.write(t, srv.Addr(), "other:")

	for _, c := range []struct {
		by, suffix string
		n          int
	}{{"messages", "msgs", 20}, {"recipients", "rcpts", 7}, {"messages", "msgs", 0}} {
		got := topOf(t, e, c.by, c.n)
		want := p.expected(c.suffix, max(c.n, len(p.subjects)))
		if c.n > 0 {
			want = want[:c.n]
		}
		if len(got.Entries) != len(want) {
			t.Fatalf("top by %s -n %d: %d entries, want %d", c.by, c.n, len(got.Entries), len(want))
		}
		for i := range want {
			if got.Entries[i] != want[i] {
				t.Fatalf("top by %s entry %d = %+v, want %+v", c.by, i, got.Entries[i], want[i])
			}
		}
		// The client-side ranking of the admin API agrees.
		client, err := e.admin.Top(context.Background(), ratelimit.TopBy(c.by), time.Hour, c.n)
		if err != nil {
			t.Fatal(err)
		}
		if len(client) != len(want) {
			t.Fatalf("Top by %s -n %d: %d entries, want %d", c.by, c.n, len(client), len(want))
		}
		for i := range want {
			if client[i].Subject.String() != want[i].Subject || client[i].Count != want[i].Count {
				t.Fatalf("Top by %s entry %d = %+v, want %+v", c.by, i, client[i], want[i])
			}
		}
		if got.By != c.by || got.WindowSeconds != 3600 {
			t.Errorf("top header %q %d", got.By, got.WindowSeconds)
		}
	}
	var table bytes.Buffer
	if err := runTop(context.Background(), topOptions{Env: e, By: "messages", Window: time.Hour, N: 3}, &table); err != nil {
		t.Fatal(err)
	}
	want := p.expected("msgs", 3)
	lines := strings.Split(strings.TrimSpace(table.String()), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "RANK") || !strings.Contains(lines[1], want[0].Subject) || !strings.Contains(lines[3], want[2].Subject) {
		t.Errorf("top table:\n%s", table.String())
	}
	for _, bad := range []topOptions{{By: "bytes", Window: time.Hour}, {By: "messages"}, {By: "messages", Window: time.Hour, N: -1}} {
		bad.Env = e
		if err := runTop(context.Background(), bad, &table); exitCode(err) != exitUsage {
			t.Errorf("top %+v: %v, want a usage error", bad, err)
		}
	}
}

// BenchmarkTopMillion measures top on a Redis holding 1,000,000 counter
// keys (about 11 million events). It needs -ctl.full: the prefill alone
// takes a while.
//
//	go test ./cmd/abusectl -run '^$' -bench TopMillion -benchtime 3x -ctl.full
func BenchmarkTopMillion(b *testing.B) {
	if !*fullTop {
		b.Skip("needs -ctl.full (pre-fills 1,000,000 keys)")
	}
	srv := redistest.Start(b)
	e := connectEnv(b, globalOptions{ConfigPath: writeConfig(b, topConfig, srv.Addr()), Timeout: 10 * time.Second})
	p := makePrefill(*topKeys)
	start := time.Now()
	p.write(b, srv.Addr(), "t:")
	b.Logf("prefill of %d keys took %s (%s keys in redis)", len(p.subjects), time.Since(start), strings.TrimSpace(srv.Info("keyspace", "db0")))
	want := p.expected("msgs", 20)
	// What abusectl top runs: the ranking made on the server.
	b.Run("abusectl-top", func(b *testing.B) {
		for b.Loop() {
			got := topOf(b, e, "messages", 20)
			if len(got.Entries) != 20 || got.Entries[0] != want[0] || got.Entries[19] != want[19] {
				b.Fatalf("top = %+v, want %+v", got.Entries, want)
			}
		}
	})
	// For comparison: the admin API's client-side Top.
	b.Run("admin-Top", func(b *testing.B) {
		for b.Loop() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			got, err := e.admin.Top(ctx, ratelimit.TopMessages, time.Hour, 20)
			cancel()
			if err != nil || len(got) != 20 || got[0].Subject.String() != want[0].Subject {
				b.Fatalf("Top = %v, %v", got, err)
			}
		}
	})
}

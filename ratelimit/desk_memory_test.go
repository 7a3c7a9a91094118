package ratelimit_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/testutil/redistest"
	"github.com/abusemilter/abusemilter/ratelimit"
)

// TestAttributionMemory measures what the Message-ID records of accepted
// mail cost in Redis: the same messages are charged twice on one fresh
// server, under two prefixes, without and with records, and the
// difference in used_memory is the records'. It sends
// $ABUSEMILTER_ATTRIBUTION_MESSAGES messages (default 5000; the figure in
// docs/PERFORMANCE.md was measured with 1000000) and fails above 500 bytes
// per record.
func TestAttributionMemory(t *testing.T) {
	n := 5000
	if v := os.Getenv("ABUSEMILTER_ATTRIBUTION_MESSAGES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			t.Fatal(err)
		}
	}
	srv := redistest.Start(t)
	pol := ratelimit.Policy{Limits: ratelimit.Limits{
		ratelimit.AccountMessages:   {rate(200, time.Hour), rate(2000, 24*time.Hour)},
		ratelimit.AccountRecipients: {rate(1000, time.Hour)},
	}}
	used := func() int64 {
		v, err := strconv.ParseInt(strings.TrimSpace(srv.Info("memory", "used_memory")), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	run := func(prefix string, records bool) int64 {
		p := pol
		if !records {
			p.Desk.AttributionRetention = -1
		}
		r := newRedis(t, ratelimit.RedisOptions{URL: "redis://" + srv.Addr(), KeyPrefix: prefix}, p, ratelimit.Options{Instance: "mx1.example.net"})
		before := used()
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := g; i < n; i += 8 {
					// realistic sizes: a Postfix long queue id, a typical
					// Message-ID, an account of 1000
					mid := fmt.Sprintf("<%d.%08x.%d@mail.customer%d.example>", 1796190000+i, i*2654435761, i, i%1000)
					acct := fmt.Sprintf("customer%d", i%1000)
					req := ratelimit.Request{Account: acct, Sender: "news@" + acct + ".example", Authenticated: true,
						Recipients: []string{fmt.Sprintf("r%d@dest.example", i)}, MessageID: mid}
					if records {
						req.Record = &ratelimit.MessageRecord{QueueID: fmt.Sprintf("4Z%010X", i), MessageID: mid, Account: acct,
							IdentifiedBy: "login", Login: acct, Client: "203.0.113.10", Sender: req.Sender, Recipients: 1,
							From: "News <news@" + acct + ".example>", Subject: "Our newsletter for December", Stage: "eom"}
					}
					if _, err := r.CheckAndCharge(context.Background(), req); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		return used() - before
	}
	without := run("m0:", false)
	with := run("m1:", true)
	perRecord := float64(with-without) / float64(n)
	t.Logf("%d messages: counters alone %d bytes, with Message-ID records %d bytes: %.0f bytes per record, %.0f MB per million",
		n, without, with, perRecord, perRecord*1e6/1e6)
	if perRecord > 500 {
		t.Errorf("%.0f bytes per Message-ID record, want at most 500", perRecord)
	}
}

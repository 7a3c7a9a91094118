package ratelimit_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/abusemilter/abusemilter/internal/testutil/redistest"
	"github.com/abusemilter/abusemilter/ratelimit"
)

// deskStore is what the desk tests drive: both stores implement it.
type deskStore interface {
	store
	ratelimit.Recorder
	ratelimit.DeskQueue
}

// deskStores are bothStores and a Redis Cluster of three masters, where
// the desk's keys lie in many slots.
func deskStores(parent *testing.T) []storeMaker {
	var addrs []string
	return append(bothStores(parent), storeMaker{"cluster", func(t *testing.T, p ratelimit.Policy, o ratelimit.Options) store {
		if addrs == nil {
			addrs = redistest.Addrs(redistest.StartCluster(parent, 3))
		}
		return subscribed(t, newRedis(t, ratelimit.RedisOptions{Addrs: addrs, Cluster: true}, p, o))
	}})
}

// fakeExecutor answers an instance's requests the way the daemon's
// executor does, with the status status, until the test ends.
func fakeExecutor(t *testing.T, q ratelimit.DeskQueue, status ratelimit.HeldStatus) *[]ratelimit.DeskRequest {
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var seen []ratelimit.DeskRequest
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			reqs, _ := q.NextDeskRequests(ctx, 200*time.Millisecond)
			for _, r := range reqs {
				mu.Lock()
				seen = append(seen, r)
				mu.Unlock()
				q.CompleteDeskRequest(ctx, ratelimit.DeskOutcome{Request: r, Status: status, Detail: "ran " + string(r.Action)})
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return &seen
}

// TestDeskHeldRecords: a held message is listed with its instance, the
// request to release it reaches the executor and its outcome comes back and
// stays on the record; a second release says it is no longer held; an
// account selector picks only messages still held; an unknown queue id is
// reported as such; the Message-ID record of an accepted message carries
// the account, queue id, instance and usage, written by CheckAndCharge.
func TestDeskHeldRecords(t *testing.T) {
	for _, mk := range deskStores(t) {
		t.Run(mk.name, func(t *testing.T) {
			ctx := context.Background()
			pol := ratelimit.Policy{Limits: ratelimit.Limits{ratelimit.AccountMessages: {rate(10, time.Hour)}}}
			s := mk.make(t, pol, ratelimit.Options{Instance: "mx1"}).(deskStore)
			for _, id := range []string{"Q1", "Q2", "Q3"} {
				rec := ratelimit.MessageRecord{QueueID: id, MessageID: "<" + id + "@example.com>", Account: "alice", Sender: "a@example.com",
					Recipients: 1, Action: "hold", Rule: "ACCOUNT_LOCKED", Held: true}
				if err := s.RecordDecision(ctx, rec); err != nil {
					t.Fatal(err)
				}
			}
			held, err := s.Held(ctx, "alice")
			if err != nil || len(held) != 3 {
				t.Fatalf("Held = %d records, %v; want 3", len(held), err)
			}
			if h := held[0]; h.Instance != "mx1" || h.Status != ratelimit.StatusHeld || h.At.IsZero() || h.MessageID == "" {
				t.Errorf("held record %+v: want instance mx1, status held, a time, a Message-ID", h)
			}
			seen := fakeExecutor(t, s, ratelimit.StatusReleased)
			out, err := s.ActOnHeld(ctx, ratelimit.Release, ratelimit.HeldSelector{QueueIDs: []string{"Q1", "NOPE"}}, "admin", 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]ratelimit.HeldStatus{}
			for _, o := range out {
				got[o.Request.QueueID] = o.Status
			}
			if got["Q1"] != ratelimit.StatusReleased || got["NOPE"] != ratelimit.StatusUnknown {
				t.Fatalf("outcomes %v, want Q1 released and NOPE unknown", got)
			}
			if r := (*seen)[0]; r.Instance != "mx1" || r.By != "admin" || r.Account != "alice" {
				t.Errorf("the executor got %+v", r)
			}
			rec, ok, err := s.DecisionRecord(ctx, "Q1")
			if err != nil || !ok || rec.Status != ratelimit.StatusReleased || rec.StatusBy != "admin" {
				t.Fatalf("DecisionRecord(Q1) = %+v, %v, %v; want status released by admin", rec, ok, err)
			}
			if byMID, ok, _ := s.DecisionRecord(ctx, "Q1@example.com"); !ok || byMID.QueueID != "Q1" {
				t.Errorf("DecisionRecord by Message-ID = %+v, %v", byMID, ok)
			}
			again, _ := s.ActOnHeld(ctx, ratelimit.Release, ratelimit.HeldSelector{QueueIDs: []string{"Q1"}}, "admin", time.Second)
			if len(again) != 1 || again[0].Status != ratelimit.StatusNotHeld {
				t.Errorf("second release: %+v, want not-held", again)
			}
			all, _ := s.ActOnHeld(ctx, ratelimit.Purge, ratelimit.HeldSelector{Account: "alice"}, "admin", 10*time.Second)
			if len(all) != 2 {
				t.Errorf("purge --account: %d outcomes, want the 2 still held: %+v", len(all), all)
			}
			st, _ := s.Status(ctx, ratelimit.Account("alice"))
			actions := map[string]int{}
			for _, a := range st.Audit {
				actions[a.Action]++
			}
			if actions["release"] != 1 || actions["purge"] != 2 || actions["release-request"] != 1 {
				t.Errorf("audit actions %v, want the requests and outcomes", actions)
			}

			// The Message-ID record of an accepted message.
			req := msg("alice", "a@example.com", "b@example.org")
			req.MessageID = "<accepted-1@example.com>"
			req.Record = &ratelimit.MessageRecord{QueueID: "Q9", MessageID: req.MessageID, Account: "alice", Sender: "a@example.com", Recipients: 1}
			if d, err := s.CheckAndCharge(ctx, req); err != nil || !d.Allowed {
				t.Fatalf("CheckAndCharge: %+v, %v", d, err)
			}
			rec, ok, err = s.DecisionRecord(ctx, "accepted-1@example.com")
			if err != nil || !ok {
				t.Fatalf("no Message-ID record: %v", err)
			}
			if rec.Account != "alice" || rec.QueueID != "Q9" || rec.Instance != "mx1" || rec.Action != "accept" || rec.At.IsZero() {
				t.Errorf("Message-ID record %+v", rec)
			}
			// (on Cluster the record is written beside the script, without the usage)
			if mk.name != "cluster" && (len(rec.Usage) != 1 || rec.Usage[0].Dimension != ratelimit.AccountMessages || rec.Usage[0].Used != 1) {
				t.Errorf("Message-ID record's usage %+v", rec.Usage)
			}
		})
	}
}

// TestDeskComplaints: complaints count per account within the window (the
// same ID once), add their strikes, lock the account at the threshold
// (its next message is refused as locked), and unattributed ones are kept
// in their own list.
func TestDeskComplaints(t *testing.T) {
	for _, mk := range deskStores(t) {
		t.Run(mk.name, func(t *testing.T) {
			ctx := context.Background()
			var mu sync.Mutex
			var events []ratelimit.Event
			pol := ratelimit.Policy{
				Strikes: ratelimit.StrikePolicy{Threshold: 10, Window: time.Hour},
				Desk:    ratelimit.DeskPolicy{ComplaintThreshold: 2, ComplaintStrikeWeight: 3, ComplaintWindow: 24 * time.Hour},
			}
			s := mk.make(t, pol, ratelimit.Options{OnEvent: func(e ratelimit.Event) { mu.Lock(); events = append(events, e); mu.Unlock() }})
			add := func(id string) ratelimit.ComplaintResult {
				t.Helper()
				res, err := s.AddComplaint(ctx, ratelimit.Complaint{ID: id, Account: "bob", Type: "abuse", QueueID: "Q" + id}, "pipe")
				if err != nil {
					t.Fatal(err)
				}
				return res
			}
			if r := add("c1"); r.Complaints != 1 || r.Strikes != 3 || r.Locked || r.Duplicate {
				t.Errorf("first complaint: %+v", r)
			}
			if r := add("c1"); !r.Duplicate || r.Complaints != 1 {
				t.Errorf("the same complaint again: %+v, want a duplicate", r)
			}
			r := add("c2")
			if r.Complaints != 2 || !r.NewlyLocked || r.Lock == nil || r.Lock.By != "complaints" {
				t.Fatalf("second complaint: %+v, want a lock by complaints", r)
			}
			d, err := s.CheckAndCharge(ctx, msg("bob", "bob@example.com", "x@example.org"))
			if err != nil || !d.Locked {
				t.Errorf("next message after the lock: %+v, %v; want locked", d, err)
			}
			list, _ := s.Complaints(ctx, "bob")
			if len(list) != 2 || list[0].ID != "c2" || list[0].At.IsZero() {
				t.Errorf("Complaints(bob) = %+v", list)
			}
			if _, err := s.AddComplaint(ctx, ratelimit.Complaint{ID: "u1", Type: "abuse", Reason: "no record of the Message-ID"}, "pipe"); err != nil {
				t.Fatal(err)
			}
			un, _ := s.Complaints(ctx, "")
			if len(un) != 1 || un[0].Reason == "" {
				t.Errorf("unattributed: %+v", un)
			}
			redistestWait(t, func() bool {
				mu.Lock()
				defer mu.Unlock()
				kinds := map[ratelimit.EventKind]int{}
				for _, e := range events {
					kinds[e.Kind]++
				}
				return kinds[ratelimit.EventComplaint] == 3 && kinds[ratelimit.EventLock] == 1
			})
		})
	}
}

func redistestWait(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("events: not all raised")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// roundTrips counts a go-redis client's round trips: one per command sent
// alone, one per pipeline (a new connection's HELLO left out).
type roundTrips struct{ n atomic.Int64 }

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() != "hello" { // a new pooled connection's handshake
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.n.Add(1); return next(ctx, cmds) }
}

// TestDeskRoundTrips: with the desk's records on, an accepted message costs
// one round trip (its Message-ID record rides in the script call) and a
// held or refused message one more (its decision record, one pipeline).
func TestDeskRoundTrips(t *testing.T) {
	srv := redistest.Start(t)
	r := newRedis(t, ratelimit.RedisOptions{URL: "redis://" + srv.Addr()},
		ratelimit.Policy{Limits: ratelimit.Limits{ratelimit.AccountMessages: {rate(100, time.Hour)}}}, ratelimit.Options{Instance: "mx1"})
	ctx := context.Background()
	send := func(i int) ratelimit.Request {
		req := msg("alice", "alice@example.com", "bob@example.org")
		req.MessageID = fmt.Sprintf("<rt-%d@example.com>", i)
		req.Record = &ratelimit.MessageRecord{QueueID: fmt.Sprintf("RT%d", i), MessageID: req.MessageID, Account: "alice"}
		return req
	}
	if _, err := r.CheckAndCharge(ctx, send(0)); err != nil { // loads the script
		t.Fatal(err)
	}
	h := &roundTrips{}
	r.Client().AddHook(h)
	if _, err := r.CheckAndCharge(ctx, send(1)); err != nil {
		t.Fatal(err)
	}
	if n := h.n.Load(); n != 1 {
		t.Fatalf("an accepted message with its Message-ID record: %d round trips, want 1", n)
	}
	req := send(2)
	if _, err := r.CheckAndCharge(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := r.RecordDecision(ctx, ratelimit.MessageRecord{QueueID: "RT2", MessageID: req.MessageID, Account: "alice", Action: "hold", Held: true}); err != nil {
		t.Fatal(err)
	}
	if n := h.n.Load(); n != 3 {
		t.Fatalf("a held message: %d round trips in all, want 1 + 2", n-1)
	}
	if rec, ok, err := r.DecisionRecord(ctx, "rt-1@example.com"); err != nil || !ok || rec.QueueID != "RT1" {
		t.Fatalf("the accepted message's record: %+v %v %v", rec, ok, err)
	}
}

package notify

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/testutil/testenv"
	"github.com/abusemilter/abusemilter/ratelimit"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// counts is an Observer that counts per sink.
type counts struct {
	mu                    sync.Mutex
	sent, failed, dropped map[string]int
}

func newCounts() *counts {
	return &counts{sent: map[string]int{}, failed: map[string]int{}, dropped: map[string]int{}}
}

func (c *counts) NotifySent(s string)    { c.mu.Lock(); c.sent[s]++; c.mu.Unlock() }
func (c *counts) NotifyFailed(s string)  { c.mu.Lock(); c.failed[s]++; c.mu.Unlock() }
func (c *counts) NotifyDropped(s string) { c.mu.Lock(); c.dropped[s]++; c.mu.Unlock() }

func (c *counts) get(m *map[string]int, sink string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return (*m)[sink]
}
func (c *counts) Sent(sink string) int    { return c.get(&c.sent, sink) }
func (c *counts) Failed(sink string) int  { return c.get(&c.failed, sink) }
func (c *counts) Dropped(sink string) int { return c.get(&c.dropped, sink) }

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, 10*time.Second, what, cond)
}

// receivedRequest is one webhook POST as the test server saw it.
type receivedRequest struct {
	header http.Header
	body   []byte
	event  Event
	raw    map[string]any
	at     time.Time
}

// hookServer is a loopback webhook receiver answering with the status
// codes in script (then 200), recording every request.
func hookServer(t *testing.T, script ...int) (*httptest.Server, chan receivedRequest) {
	t.Helper()
	got := make(chan receivedRequest, 100)
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rr := receivedRequest{header: r.Header.Clone(), body: body, at: time.Now()}
		if err := json.Unmarshal(body, &rr.event); err != nil {
			t.Errorf("webhook body is not an event: %v: %s", err, body)
		}
		json.Unmarshal(body, &rr.raw)
		got <- rr
		if i := int(calls.Add(1)) - 1; i < len(script) {
			w.WriteHeader(script[i])
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func receive(t *testing.T, got chan receivedRequest) receivedRequest {
	t.Helper()
	select {
	case r := <-got:
		return r
	case <-time.After(10 * time.Second):
		t.Fatalf("webhook received nothing")
	}
	return receivedRequest{}
}

func newNotifier(t *testing.T, opts Options) *Notifier {
	t.Helper()
	if opts.BackoffBase == 0 {
		opts.BackoffBase = time.Millisecond
	}
	if opts.Host == "" {
		opts.Host = "mx-test"
	}
	n, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n.Close(ctx)
	})
	return n
}

func TestWebhookReceivesLockAndThresholdEvents(t *testing.T) {
	srv, got := hookServer(t)
	obs := newCounts()
	now := time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC)
	n := newNotifier(t, Options{
		Webhooks: []Webhook{{URL: srv.URL + "/hook", Token: "t0ken-abc", Timeout: 5 * time.Second}},
		Observer: obs,
		Now:      func() time.Time { return now },
	})

	until := now.Add(2 * time.Hour)
	n.Locked("cust42", "10 refusals within 1h", "ACCOUNT_MSG_RATE", "auto", until)
	r := receive(t, got)
	if r.header.Get("Authorization") != "Bearer t0ken-abc" {
		t.Errorf("Authorization = %q, want the bearer token", r.header.Get("Authorization"))
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if r.header.Get("X-Abusemilter-Event") != "account_locked" || r.header.Get("X-Abusemilter-Event-Id") != r.event.ID {
		t.Errorf("event headers = %q %q, want account_locked and the event id", r.header.Get("X-Abusemilter-Event"), r.header.Get("X-Abusemilter-Event-Id"))
	}
	wantLock := map[string]any{
		"version": 1.0, "id": r.event.ID, "event": "account_locked",
		"time": "2026-11-27T06:00:00Z", "host": "mx-test", "account": "cust42",
		"reason": "10 refusals within 1h", "rule": "ACCOUNT_MSG_RATE", "by": "auto",
		"until": "2026-11-27T08:00:00Z",
	}
	assertJSON(t, r.raw, wantLock)
	if len(r.event.ID) != 32 {
		t.Errorf("event id %q is not 32 hex digits", r.event.ID)
	}

	// The rate store saw 8 of 10 messages within 1h: past 80%.
	n.Publish(Event{Kind: LimitThreshold, Account: "cust42", Rule: "ACCOUNT_MSG_RATE",
		Dimension: "account_messages", KeyKind: "account", Key: "cust42",
		Used: 8, Limit: 10, Window: ratelimit.FormatWindow(time.Hour), Share: 0.8})
	r = receive(t, got)
	assertJSON(t, r.raw, map[string]any{
		"version": 1.0, "id": r.event.ID, "event": "limit_threshold",
		"time": "2026-11-27T06:00:00Z", "host": "mx-test", "account": "cust42",
		"rule": "ACCOUNT_MSG_RATE", "dimension": "account_messages", "key_kind": "account", "key": "cust42",
		"used": 8.0, "limit": 10.0, "window": "1h", "share": 0.8,
	})
	waitFor(t, "two webhook deliveries counted", func() bool { return obs.Sent(SinkWebhook) == 2 })
	if obs.Failed(SinkWebhook) != 0 || obs.Dropped(SinkWebhook) != 0 {
		t.Errorf("failed=%d dropped=%d, want 0", obs.Failed(SinkWebhook), obs.Dropped(SinkWebhook))
	}
}

// assertJSON checks that got has exactly the fields of want.
func assertJSON(t *testing.T, got, want map[string]any) {
	t.Helper()
	for k, w := range want {
		if got[k] != w {
			t.Errorf("field %q = %#v, want %#v", k, got[k], w)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected field %q = %#v", k, got[k])
		}
	}
}

func TestFailModeEventsOnlyOnChange(t *testing.T) {
	srv, got := hookServer(t)
	n := newNotifier(t, Options{Webhooks: []Webhook{{URL: srv.URL, Timeout: 5 * time.Second}}})
	n.FailMode(false, "accept", nil)
	n.FailMode(true, "accept", errors.New("dial tcp 127.0.0.1:6390: connection refused"))
	n.FailMode(true, "accept", errors.New("again"))
	n.FailMode(false, "accept", nil)
	n.FailMode(false, "accept", nil)

	r := receive(t, got)
	if r.event.Kind != FailModeEntered || r.event.FailMode != "accept" || !strings.Contains(r.event.Error, "connection refused") {
		t.Errorf("first event = %+v, want fail_mode_entered with the cause", r.event)
	}
	if r = receive(t, got); r.event.Kind != FailModeLeft || r.event.Error != "" {
		t.Errorf("second event = %+v, want fail_mode_left", r.event)
	}
	n.Publish(Event{Kind: AccountUnlocked, Account: "marker"})
	if r = receive(t, got); r.event.Account != "marker" {
		t.Errorf("unexpected extra event %+v", r.event)
	}
}

func TestWebhookRetriesWithBackoff(t *testing.T) {
	srv, got := hookServer(t, http.StatusServiceUnavailable, http.StatusTooManyRequests)
	obs := newCounts()
	const base = 20 * time.Millisecond
	n := newNotifier(t, Options{
		Webhooks:    []Webhook{{URL: srv.URL, Timeout: 5 * time.Second, Retries: 3}},
		Observer:    obs,
		BackoffBase: base,
	})
	n.Unlocked("cust1", "admin")
	a1, a2, a3 := receive(t, got), receive(t, got), receive(t, got)
	waitFor(t, "delivery after two retries", func() bool { return obs.Sent(SinkWebhook) == 1 })
	if a1.event.ID != a2.event.ID || a2.event.ID != a3.event.ID {
		t.Errorf("retries carry different event ids: %s %s %s", a1.event.ID, a2.event.ID, a3.event.ID)
	}
	// The waits are jittered within [d/2, d]: at least base/2, then base.
	if gap := a2.at.Sub(a1.at); gap < base/2 {
		t.Errorf("first retry after %v, want at least %v", gap, base/2)
	}
	if gap := a3.at.Sub(a2.at); gap < base {
		t.Errorf("second retry after %v, want at least %v (doubled)", gap, base)
	}
	if obs.Failed(SinkWebhook) != 0 {
		t.Errorf("failed = %d, want 0", obs.Failed(SinkWebhook))
	}
}

func TestWebhookPermanentErrorIsNotRetried(t *testing.T) {
	srv, got := hookServer(t, http.StatusBadRequest)
	obs := newCounts()
	n := newNotifier(t, Options{Webhooks: []Webhook{{URL: srv.URL, Timeout: 5 * time.Second, Retries: 5}}, Observer: obs})
	n.Unlocked("cust1", "admin")
	receive(t, got)
	waitFor(t, "failure counted", func() bool { return obs.Failed(SinkWebhook) == 1 })
	n.Publish(Event{Kind: AccountUnlocked, Account: "marker"})
	if r := receive(t, got); r.event.Account != "marker" {
		t.Errorf("a 400 was retried: got %+v", r.event)
	}
}

func TestBackoffGrowsAndIsCapped(t *testing.T) {
	n := &Notifier{opts: Options{BackoffBase: 100 * time.Millisecond, BackoffMax: time.Second}}
	for _, tc := range []struct {
		attempt int
		full    time.Duration
	}{{1, 100 * time.Millisecond}, {2, 200 * time.Millisecond}, {3, 400 * time.Millisecond}, {4, 800 * time.Millisecond}, {5, time.Second}, {30, time.Second}} {
		for range 50 {
			if d := n.backoff(tc.attempt); d < tc.full/2 || d > tc.full {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", tc.attempt, d, tc.full/2, tc.full)
			}
		}
	}
}

// closedPortURL returns a loopback URL on which nothing listens.
func closedPortURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + "/hook?secret=querytoken"
}

func TestDeadWebhookFailsAfterRetriesAndNeverLogsToken(t *testing.T) {
	obs := newCounts()
	core, logs := observer.New(zap.DebugLevel)
	n := newNotifier(t, Options{
		Webhooks: []Webhook{{URL: closedPortURL(t), Token: "t0ken-never-logged", TokenHeader: "X-Secret", Timeout: time.Second, Retries: 2}},
		Observer: obs,
		Logger:   zap.New(core),
	})
	n.Locked("cust9", "manual", "", "admin", time.Time{})
	waitFor(t, "failure counted", func() bool { return obs.Failed(SinkWebhook) == 1 })
	if obs.Sent(SinkWebhook) != 0 {
		t.Errorf("sent = %d to a closed port", obs.Sent(SinkWebhook))
	}
	var sawRefused bool
	for _, e := range logs.All() {
		line := e.Message
		for k, v := range e.ContextMap() {
			line += " " + k + "=" + toString(v)
		}
		if strings.Contains(line, "t0ken-never-logged") || strings.Contains(line, "querytoken") {
			t.Errorf("secret in log line: %s", line)
		}
		if strings.Contains(line, "connection refused") {
			sawRefused = true
		}
	}
	if !sawRefused {
		t.Errorf("the failure's cause was not logged: %v", logs.All())
	}
}

func toString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func TestSlowWebhookTimesOut(t *testing.T) {
	obs := newCounts()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // lets the server notice the client hanging up
		<-r.Context().Done()        // never answers; the client's timeout ends it
	}))
	t.Cleanup(srv.Close)
	n := newNotifier(t, Options{Webhooks: []Webhook{{URL: srv.URL, Timeout: 50 * time.Millisecond, Retries: 1}}, Observer: obs})
	n.Unlocked("x", "admin")
	waitFor(t, "timeout failure counted", func() bool { return obs.Failed(SinkWebhook) == 1 })
}

// TestPublishNeverBlocksAndDrops stalls the webhook so that its worker is
// busy, fills the queue and checks that further Publish calls return at
// once and count exactly the drops.
func TestPublishNeverBlocksAndDrops(t *testing.T) {
	entered := make(chan struct{}, 10)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		entered <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	obs := newCounts()
	const queue = 3
	n := newNotifier(t, Options{
		Webhooks:  []Webhook{{URL: srv.URL, Timeout: time.Minute}},
		QueueSize: queue,
		Observer:  obs,
	})
	t.Cleanup(func() { close(release) }) // runs before the notifier's Close
	n.Unlocked("first", "admin")
	select {
	case <-entered: // the worker is now stuck in the first request
	case <-time.After(10 * time.Second):
		t.Fatal("webhook never called")
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		for range queue + 7 {
			n.Unlocked("more", "admin")
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Publish blocked behind a stalled webhook")
	}
	if got := obs.Dropped(SinkWebhook); got != 7 {
		t.Errorf("dropped = %d, want 7 (queue of %d full)", got, queue)
	}
	if obs.Sent(SinkWebhook) != 0 || obs.Failed(SinkWebhook) != 0 {
		t.Errorf("sent=%d failed=%d while stalled", obs.Sent(SinkWebhook), obs.Failed(SinkWebhook))
	}
}

func TestCloseAbortsStuckDeliveryAndDropsAfterwards(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	obs := newCounts()
	n, err := New(Options{Webhooks: []Webhook{{URL: srv.URL, Timeout: time.Minute}}, Observer: obs, QueueSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	n.Unlocked("a", "admin")
	n.Unlocked("b", "admin")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := n.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close = %v, want a deadline error", err)
	}
	if got := obs.Failed(SinkWebhook) + obs.Dropped(SinkWebhook); got != 2 {
		t.Errorf("failed+dropped = %d after Close, want 2 (nothing lost silently)", got)
	}
	n.Unlocked("late", "admin")
	if got := obs.Failed(SinkWebhook) + obs.Dropped(SinkWebhook); got != 3 {
		t.Errorf("Publish after Close: failed+dropped = %d, want 3", got)
	}
	if err := n.Close(context.Background()); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func TestNilNotifierIsNoop(t *testing.T) {
	var n *Notifier
	n.Publish(Event{Kind: AccountLocked})
	n.Locked("a", "r", "R", "auto", time.Time{})
	n.Unlocked("a", "admin")
	n.FailMode(true, "defer", nil)
	if err := n.Reopen(); err != nil {
		t.Error(err)
	}
	if err := n.Close(context.Background()); err != nil {
		t.Error(err)
	}
}

func readAuditLines(t *testing.T, path string) []Event {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var events []Event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev Event
		dec := json.NewDecoder(strings.NewReader(sc.Text()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&ev); err != nil {
			t.Fatalf("audit line %q is not an event: %v", sc.Text(), err)
		}
		events = append(events, ev)
	}
	return events
}

func TestAuditLogLinesAndReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	obs := newCounts()
	n := newNotifier(t, Options{AuditLog: path, Observer: obs})

	n.Locked("cust1", "10 refusals within 1h", "ACCOUNT_MSG_RATE", "auto", time.Time{})
	n.Unlocked("cust1", "admin")
	waitFor(t, "two audit lines", func() bool { return obs.Sent(SinkAudit) == 2 })

	rotated := filepath.Join(dir, "audit.jsonl.1")
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	if err := n.Reopen(); err != nil {
		t.Fatalf("Reopen: %v", err)
	}
	n.FailMode(true, "defer", errors.New("i/o timeout"))
	waitFor(t, "third audit line", func() bool { return obs.Sent(SinkAudit) == 3 })

	old := readAuditLines(t, rotated)
	if len(old) != 2 || old[0].Kind != AccountLocked || old[0].Account != "cust1" || old[0].Rule != "ACCOUNT_MSG_RATE" || old[1].Kind != AccountUnlocked || old[1].By != "admin" {
		t.Errorf("rotated audit log = %+v", old)
	}
	cur := readAuditLines(t, path)
	if len(cur) != 1 || cur[0].Kind != FailModeEntered || cur[0].FailMode != "defer" || cur[0].Error != "i/o timeout" {
		t.Errorf("new audit log = %+v", cur)
	}
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o640 {
		t.Errorf("audit log mode = %v, %v; want 0640", info.Mode().Perm(), err)
	}
}

func TestAuditLogOpenErrorIsReported(t *testing.T) {
	_, err := New(Options{AuditLog: filepath.Join(t.TempDir(), "missing-dir", "audit.jsonl")})
	if err == nil || !strings.Contains(err.Error(), "audit log") || !strings.Contains(err.Error(), "missing-dir") {
		t.Errorf("New with an unwritable audit log: err = %v, want one naming the file", err)
	}
}

// BenchmarkPublish measures the cost on the mail path: one event queued
// for an audit log and a webhook whose queues have room.
func BenchmarkPublish(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	n, err := New(Options{
		Webhooks:  []Webhook{{URL: srv.URL, Timeout: time.Second}},
		AuditLog:  filepath.Join(b.TempDir(), "audit.jsonl"),
		QueueSize: 1 << 20,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close(context.Background())
	ev := Event{Kind: LimitThreshold, Account: "cust42", Dimension: "account_messages", Used: 160, Limit: 200}
	b.ReportAllocs()
	for b.Loop() {
		n.Publish(ev)
	}
}

// BenchmarkPublishDrop measures Publish when the only queue is full: the
// path taken while a webhook is down.
func BenchmarkPublishDrop(b *testing.B) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer srv.Close()
	defer close(release)
	n, err := New(Options{Webhooks: []Webhook{{URL: srv.URL, Timeout: time.Minute}}, QueueSize: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close(context.Background())
	ev := Event{Kind: LimitThreshold, Account: "cust42"}
	b.ReportAllocs()
	for b.Loop() {
		n.Publish(ev)
	}
}

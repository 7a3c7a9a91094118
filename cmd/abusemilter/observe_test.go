package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/abusemilter/abusemilter/internal/testutil/redistest"
	"github.com/abusemilter/abusemilter/internal/testutil/testenv"
)

// scrape reads the daemon's /metrics and returns each sample line's value
// by its full name with labels, e.g. `abusemilter_account_locks_total`.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := make(map[string]float64)
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// sendAs runs one whole message for a login on its own milter connection
// and returns the end-of-message action. The envelope sender is the login
// when it is an address, else alice@example.com.
func sendAs(t *testing.T, addr, login, from, messageID string) *gomilter.Action {
	t.Helper()
	s := clientSession(t, addr)
	act(t, "conn")(s.Conn("client.example.net", gomilter.FamilyInet, 40000, "192.0.2.10"))
	if err := s.Macros(gomilter.CodeMail, "{auth_authen}", login, "{auth_type}", "PLAIN"); err != nil {
		t.Fatal(err)
	}
	envFrom := "alice@example.com"
	if strings.Contains(login, "@") {
		envFrom = login
	}
	if a := act(t, "mail")(s.Mail(envFrom, nil)); a.Code != gomilter.ActContinue {
		return a
	}
	act(t, "rcpt")(s.Rcpt("bob@example.org", nil))
	for _, h := range [][2]string{{"From", from}, {"To", "bob@example.org"}, {"Date", time.Now().Format(time.RFC1123Z)}, {"Message-Id", messageID}, {"Subject", "hi"}} {
		act(t, "header")(s.HeaderField(h[0], h[1]))
	}
	act(t, "eoh")(s.HeaderEnd())
	_, a, err := s.BodyReadFrom(strings.NewReader("hello\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func metricsAddr(t *testing.T, p *proc) string {
	t.Helper()
	ready, _ := p.waitLog(t, "abusemilter ready", 0)
	addr, _ := ready["metrics"].(string)
	if addr == "" {
		t.Fatalf("ready line without a metrics address: %v", ready)
	}
	return addr
}

// TestMetricsAndWebhooks drives traffic through the built daemon and checks
// that /metrics moved by exactly what was sent, that /readyz answers, and
// that a threshold crossing and a lock reach a webhook as JSON events.
func TestMetricsAndWebhooks(t *testing.T) {
	events := make(chan map[string]any, 16)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ev map[string]any
		if err := json.Unmarshal(body, &ev); err != nil {
			t.Errorf("webhook body is not JSON: %q", body)
		}
		if got := r.Header.Get("Authorization"); got != "Bearer hooktoken" {
			t.Errorf("webhook Authorization = %q", got)
		}
		events <- ev
	}))
	defer hook.Close()
	t.Setenv("AM_TEST_HOOK_TOKEN", "hooktoken")
	cfg := writeConfig(t, t.TempDir(), fmt.Sprintf(`
listen: inet:127.0.0.1:0
metrics:
  listen: 127.0.0.1:0
dns:
  enabled: false
identity:
  login_is_address: false
  accounts:
    alice:
      logins: [alice]
      send_as: [example.com]
limits:
  account_messages: [4/1h]
strikes:
  threshold: 2
  window: 1h
notify:
  threshold: 0.5
  webhooks:
    - url: %s
      token_env: AM_TEST_HOOK_TOKEN
`, hook.URL))
	p := startDaemon(t, "--config", cfg)
	addr, maddr := milterAddr(t, p), metricsAddr(t, p)

	resp, err := http.Get("http://" + maddr + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/readyz: %v %v", resp, err)
	}
	before := scrape(t, maddr)
	const (
		accepted = `abusemilter_decisions_total{action="accept",clause="none",mode="enforce",rule="none",stage="eom"}`
		rejected = `abusemilter_decisions_total{action="reject",clause="impersonation",mode="enforce",rule="FROM_DOMAIN_NOT_OWNED",stage="eom"}`
		locks    = `abusemilter_account_locks_total`
		sent     = `abusemilter_notify_sent_total{sink="webhook"}`
	)
	for i := range 2 {
		if a := sendAs(t, addr, "alice", "alice@example.com", fmt.Sprintf("<ok%d@example.com>", i)); a.Code != gomilter.ActAccept {
			t.Fatalf("own mail %d: %q %d %s", i, a.Code, a.SMTPCode, a.SMTPText)
		}
	}
	for i := range 2 {
		if a := sendAs(t, addr, "alice", "Bank <security@bank.example>", fmt.Sprintf("<forged%d@example.com>", i)); a.SMTPCode != 550 {
			t.Fatalf("forged mail %d: %q %d %s", i, a.Code, a.SMTPCode, a.SMTPText)
		}
	}
	// Two strikes lock the account: its next message is deferred as locked.
	if a := sendAs(t, addr, "alice", "alice@example.com", "<after@example.com>"); a.SMTPCode != 451 || !strings.Contains(a.SMTPText, "ACCOUNT_LOCKED") {
		t.Fatalf("message after the lock: %d %s, want 451 ACCOUNT_LOCKED", a.SMTPCode, a.SMTPText)
	}

	got := map[string]map[string]any{}
	deadline := time.After(10 * time.Second)
	for len(got) < 2 {
		select {
		case ev := <-events:
			got[ev["event"].(string)] = ev
		case <-deadline:
			t.Fatalf("webhook events received: %v, want limit_threshold and account_locked", got)
		}
	}
	if ev := got["limit_threshold"]; ev["key"] != "alice" || ev["used"] != 2.0 || ev["limit"] != 4.0 || ev["rule"] != "ACCOUNT_MSG_RATE" {
		t.Errorf("threshold event = %v", ev)
	}
	if ev := got["account_locked"]; ev["account"] != "alice" || ev["strikes"] != 2.0 {
		t.Errorf("lock event = %v", ev)
	}

	after := scrape(t, maddr)
	for name, want := range map[string]float64{accepted: 2, rejected: 2, locks: 1} {
		if d := after[name] - before[name]; d != want {
			t.Errorf("%s moved by %v, want %v", name, d, want)
		}
	}
	if d := after[sent] - before[sent]; d != 2 {
		t.Errorf("%s moved by %v, want 2", sent, d)
	}
}

// TestDeadWebhookNeverDelaysMail: with a webhook that accepts connections
// but never answers and a queue of one, events are dropped and counted
// while every message still gets its verdict at once.
func TestDeadWebhookNeverDelaysMail(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // hold it open, never answer
		}
	}()
	cfg := writeConfig(t, t.TempDir(), fmt.Sprintf(`
listen: inet:127.0.0.1:0
metrics:
  listen: 127.0.0.1:0
dns:
  enabled: false
limits:
  account_messages: [2/1h]
notify:
  threshold: 0.5
  queue_size: 1
  webhooks:
    - url: http://%s/hook
      timeout: 30s
`, ln.Addr()))
	p := startDaemon(t, "--config", cfg)
	addr, maddr := milterAddr(t, p), metricsAddr(t, p)
	// Each new address login crosses half of its 2/1h limit with its first
	// message: one event per message.
	const n = 6
	for i := range n {
		login := fmt.Sprintf("user%d@example.net", i)
		start := time.Now()
		if a := sendAs(t, addr, login, login, fmt.Sprintf("<m%d@example.net>", i)); a.Code != gomilter.ActAccept {
			t.Fatalf("message %d: %q %d %s", i, a.Code, a.SMTPCode, a.SMTPText)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("message %d took %v with the webhook hanging", i, d)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	var dropped float64
	for time.Now().Before(deadline) {
		if dropped = scrape(t, maddr)[`abusemilter_notify_dropped_total{sink="webhook"}`]; dropped >= n-2 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("webhook drops = %v, want at least %d (one in flight, one queued)", dropped, n-2)
}

// TestBinaryRedisSubscriptionMetric follows the Redis store's subscription
// to admin changes through /metrics, with a real redis-server: absent with
// the in-memory store, 1 once the Redis store (loaded by a reload) has
// subscribed, 0 while redis-server is down, 1 again once it is back.
func TestBinaryRedisSubscriptionMetric(t *testing.T) {
	const gauge = "abusemilter_redis_invalidation_subscribed"
	srv := redistest.Start(t)
	memoryConfig := daemonConfig + "metrics:\n  listen: 127.0.0.1:0\n"
	redisConfig := memoryConfig + "redis:\n  url: redis://" + srv.Addr() + "/0\n  timeout: 200ms\n"
	cfg := writeConfig(t, t.TempDir(), memoryConfig)
	p := startDaemon(t, "--config", cfg)
	maddr := metricsAddr(t, p)

	m := scrape(t, maddr)
	if _, ok := m["abusemilter_store_calls_total"]; !ok {
		t.Fatalf("no store metrics at all: %v", m)
	}
	if v, ok := m[gauge]; ok {
		t.Errorf("in-memory store: %s = %v, want it absent", gauge, v)
	}

	value := func() (float64, bool) { v, ok := scrape(t, maddr)[gauge]; return v, ok }
	waitValue := func(want float64, what string) {
		t.Helper()
		testenv.WaitFor(t, 30*time.Second, what, func() bool { v, ok := value(); return ok && v == want })
	}

	writeConfig(t, filepath.Dir(cfg), redisConfig)
	p.signal(t, syscall.SIGHUP)
	_, next := p.waitLog(t, "config reloaded", 0)
	waitValue(1, gauge+" 1 after switching to the Redis store")

	srv.Kill()
	waitValue(0, gauge+" 0 after redis-server was killed")

	srv.Restart()
	waitValue(1, gauge+" 1 again after redis-server came back")

	writeConfig(t, filepath.Dir(cfg), memoryConfig)
	p.signal(t, syscall.SIGHUP)
	p.waitLog(t, "config reloaded", next)
	if v, ok := value(); ok {
		t.Errorf("back on the in-memory store: %s = %v, want it absent", gauge, v)
	}
	p.signal(t, syscall.SIGTERM)
	if code := p.waitExit(t); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

// TestMonitorAndEnforceRefusalsInTwoSeries: the built daemon counts a
// monitor-mode would-be refusal and an enforce-mode refusal of the same
// message in two series of abusemilter_decisions_total (mode label), so
// that an alert on real refusals never fires on monitor mode's.
func TestMonitorAndEnforceRefusalsInTwoSeries(t *testing.T) {
	const base = `
listen: inet:127.0.0.1:0
metrics:
  listen: 127.0.0.1:0
dns:
  enabled: false
identity:
  login_is_address: false
  accounts:
    alice:
      logins: [alice]
      send_as: [example.com]
strikes:
  threshold: 0
`
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "mode: monitor\n"+base)
	p := startDaemon(t, "--config", cfg)
	addr, maddr := milterAddr(t, p), metricsAddr(t, p)
	const (
		monitor = `abusemilter_decisions_total{action="reject",clause="impersonation",mode="monitor",rule="FROM_DOMAIN_NOT_OWNED",stage="eom"}`
		enforce = `abusemilter_decisions_total{action="reject",clause="impersonation",mode="enforce",rule="FROM_DOMAIN_NOT_OWNED",stage="eom"}`
	)
	if a := sendAs(t, addr, "alice", "Bank <security@bank.example>", "<m1@example.com>"); a.Code != gomilter.ActAccept {
		t.Fatalf("monitor mode: %q %d %s, want accept", a.Code, a.SMTPCode, a.SMTPText)
	}
	m := scrape(t, maddr)
	if m[monitor] != 1 || m[enforce] != 0 {
		t.Fatalf("after a monitor-mode would-be refusal: monitor series %v, enforce series %v; want 1 and 0", m[monitor], m[enforce])
	}
	writeConfig(t, dir, "mode: enforce\n"+base)
	p.signal(t, syscall.SIGHUP)
	p.waitLog(t, "config reloaded", 0)
	if a := sendAs(t, addr, "alice", "Bank <security@bank.example>", "<m2@example.com>"); a.SMTPCode != 550 {
		t.Fatalf("enforce mode: %q %d %s, want 550", a.Code, a.SMTPCode, a.SMTPText)
	}
	m = scrape(t, maddr)
	if m[monitor] != 1 || m[enforce] != 1 {
		t.Fatalf("after an enforce-mode refusal: monitor series %v, enforce series %v; want 1 and 1", m[monitor], m[enforce])
	}
}

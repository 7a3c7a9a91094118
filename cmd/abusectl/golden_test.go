package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/config"
	"github.com/abusemilter/abusemilter/internal/daemon"
	"github.com/abusemilter/abusemilter/ratelimit"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenEnv is an env over the in-memory store (the same admin API as
// Redis) with a clock the test moves, so that every time in the output is
// fixed. It replays a morning of traffic and admin actions.
func goldenEnv(t *testing.T) *env {
	t.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf(testConfig, "127.0.0.1:1")), "golden.yaml")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	pol := daemon.Policy(cfg)
	pol.Desk.ComplaintStrikeWeight = 0 // alice's complaint below does not lock her
	mem := ratelimit.NewMemoryOptions(pol, clock, ratelimit.Options{Instance: "mx1"})
	t.Cleanup(func() { mem.Close() })
	ctx := context.Background()
	charge := func(account, sender string, rcpts int, outcome ratelimit.Outcome) {
		t.Helper()
		req := ratelimit.Request{Account: account, Sender: sender, Client: netip.MustParseAddr("192.0.2.10"),
			Authenticated: true, Outcome: outcome, MessageID: fmt.Sprintf("<%d@golden>", now.UnixNano())}
		for i := range rcpts {
			req.Recipients = append(req.Recipients, fmt.Sprintf("r%d@dest.example", i))
		}
		if _, err := mem.CheckAndCharge(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	step := func(d time.Duration) { now = now.Add(d) }
	// alice sends three messages and is refused a fourth.
	for range 4 {
		charge("alice", "alice@example.com", 5, ratelimit.Charge)
		step(7 * time.Minute)
	}
	// mallory impersonates twice: locked by strikes.
	charge("mallory", "ceo@bank.example", 1, ratelimit.Strike)
	step(time.Minute)
	charge("mallory", "ceo@bank.example", 1, ratelimit.Strike)
	step(3 * time.Minute)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(mem.Lock(ctx, "bob", "phishing kit in webroot, ticket 4711", "oncall", 24*time.Hour))
	step(2 * time.Minute)
	must(mem.SetOverride(ctx, ratelimit.Account("alice"), ratelimit.AccountMessages, []ratelimit.Rate{{Limit: 5, Window: time.Hour}, {Limit: 50, Window: 24 * time.Hour}}, 6*time.Hour, "oncall"))
	step(time.Minute)
	must(mem.Exempt(ctx, ratelimit.Sender("news@shop.example"), "monthly newsletter", 0, "oncall"))
	step(time.Minute)
	charge("alice", "alice@example.com", 2, ratelimit.Charge)
	step(time.Minute)
	// the desk: one of alice's messages held, one complained about
	must(mem.RecordDecision(ctx, ratelimit.MessageRecord{QueueID: "4GOLD1", MessageID: "golden-held@example.com", Account: "alice",
		Sender: "alice@example.com", Recipients: 1, Subject: "Your invoice", Action: "hold", Rule: "URL_RAW_IP", Clause: "spam-volume", Score: 4,
		Reply: "250 2.0.0 Held for review under the e-mail abuse policy (spam-volume: URL_RAW_IP)", Held: true,
		Findings: []ratelimit.RecordFinding{{Rule: "URL_RAW_IP", Clause: "spam-volume", Score: 4, Reason: "link to http://198.18.0.7/login"}},
		Usage:    []ratelimit.Usage{{Dimension: ratelimit.AccountMessages, Key: "alice", Rate: ratelimit.Rate{Limit: 5, Window: time.Hour}, Used: 5}}}))
	_, err = mem.AddComplaint(ctx, ratelimit.Complaint{ID: "c0ffe1", Account: "alice", Type: "abuse", MessageID: "golden-held@example.com", QueueID: "4GOLD1"}, "pipe")
	must(err)
	_, err = mem.AddComplaint(ctx, ratelimit.Complaint{ID: "c0ffee", Account: "alice", Type: "abuse", MessageID: "golden-1@example.com", QueueID: "4GOLD0"}, "pipe")
	must(err)
	step(4 * time.Minute)
	return &env{admin: mem, policy: daemon.Policy(cfg), now: clock, user: "oncall", where: "memory"}
}

// checkGolden compares got with testdata/name, or rewrites it with -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -update rewrites it):\n%s", name, lineDiff(string(want), string(got)))
	}
}

// lineDiff shows the lines that differ.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := range max(len(w), len(g)) {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n  want %q\n  got  %q\n", i+1, wl, gl)
		}
	}
	return b.String()
}

func TestGoldenOutputs(t *testing.T) {
	e := goldenEnv(t)
	ctx := context.Background()
	for _, c := range []struct {
		name string
		run  func(out *bytes.Buffer) error
	}{
		{"status-alice.txt", func(out *bytes.Buffer) error { return runStatus(ctx, statusOptions{Env: e, Subject: "alice"}, out) }},
		{"status-alice.json", func(out *bytes.Buffer) error {
			return runStatus(ctx, statusOptions{Env: e, Subject: "alice", JSON: true}, out)
		}},
		{"status-mallory.txt", func(out *bytes.Buffer) error {
			return runStatus(ctx, statusOptions{Env: e, Subject: "mallory"}, out)
		}},
		{"status-bob.json", func(out *bytes.Buffer) error {
			return runStatus(ctx, statusOptions{Env: e, Subject: "bob", JSON: true}, out)
		}},
		{"status-sender.txt", func(out *bytes.Buffer) error {
			return runStatus(ctx, statusOptions{Env: e, Subject: "news@shop.example"}, out)
		}},
		{"top.txt", func(out *bytes.Buffer) error {
			return runTop(ctx, topOptions{Env: e, By: "messages", Window: time.Hour, N: 20}, out)
		}},
		{"top-recipients.json", func(out *bytes.Buffer) error {
			return runTop(ctx, topOptions{Env: e, By: "recipients", Window: time.Hour, N: 20, JSON: true}, out)
		}},
		{"held.txt", func(out *bytes.Buffer) error { return runHeld(ctx, heldOptions{Env: e}, out) }},
		{"why-held.txt", func(out *bytes.Buffer) error { return runWhy(ctx, whyOptions{Env: e, ID: "4GOLD1"}, out) }},
		{"why-held.json", func(out *bytes.Buffer) error {
			return runWhy(ctx, whyOptions{Env: e, ID: "<golden-held@example.com>", JSON: true}, out)
		}},
		{"locked.txt", func(out *bytes.Buffer) error { return runLocked(ctx, lockedOptions{Env: e}, out) }},
		{"locked.json", func(out *bytes.Buffer) error { return runLocked(ctx, lockedOptions{Env: e, JSON: true}, out) }},
		{"exempt-list.txt", func(out *bytes.Buffer) error {
			return runExempt(ctx, exemptOptions{Env: e, Action: "list"}, out)
		}},
		{"exempt-list.json", func(out *bytes.Buffer) error {
			return runExempt(ctx, exemptOptions{Env: e, Action: "list", JSON: true}, out)
		}},
		{"audit.txt", func(out *bytes.Buffer) error { return runAudit(ctx, auditOptions{Env: e, Limit: 50}, out) }},
		{"audit-alice.json", func(out *bytes.Buffer) error {
			return runAudit(ctx, auditOptions{Env: e, Subject: "alice", Limit: 2, JSON: true}, out)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := c.run(&out); err != nil {
				t.Fatal(err)
			}
			checkGolden(t, c.name, out.Bytes())
		})
	}
}

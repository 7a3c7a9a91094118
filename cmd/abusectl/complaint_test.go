package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/config"
	"github.com/abusemilter/abusemilter/internal/daemon"
	"github.com/abusemilter/abusemilter/internal/testutil/redistest"
	"github.com/abusemilter/abusemilter/ratelimit"
)

// complaintConfig: three complaints within a week lock an account (its
// mail is then deferred); the tracking key is the one the samples'
// tracking headers were signed with, trusted at any age. %s: the redis
// address, the key file, the audit log.
const complaintConfig = `
identity:
  login_is_address: false
  accounts:
    alice:
      logins: [alice]
      send_as: [example.com]
    bob:
      logins: [bob]
      send_as: [bob.example]
    carol:
      logins: [carol]
      send_as: [carol.example]
strikes:
  threshold: 100
  window: 1h
  lock_action: defer
redis:
  url: redis://%s
  key_prefix: "c:"
  timeout: 2s
desk:
  complaints:
    window: 7d
    threshold: 3
    strike_weight: 2
  tracking:
    accounts: ["*"]
    key_file: %s
    max_age: 36500d
notify:
  audit_log: %s
`

const complaintSamples = "../../testdata/complaints"

// TestComplaintSamples feeds every sample of testdata/complaints to
// "abusectl complaint": each is attributed to the account whose message it
// is about (by the Message-ID record the milter wrote, or by the tracking
// header), or listed as unattributable, with exit code 0; garbage exits 65;
// with the store down the command exits 75 and records nothing. The third
// complaint about alice locks her account, and her next message is deferred
// as locked. Every complaint reaches the audit log as a complaint event.
func TestComplaintSamples(t *testing.T) {
	rs := redistest.Start(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "tracking.key")
	if err := os.WriteFile(keyFile, []byte("complaint-test-key-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	audit := filepath.Join(dir, "audit.jsonl")
	cfgPath := writeConfig(t, complaintConfig, rs.Addr(), keyFile, audit)
	f := &fixture{redis: rs, configPath: cfgPath}
	f.milterAddr, f.milter = startMilter(t, cfgPath)

	// The Message-ID records the milter writes for accepted mail.
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	store, err := daemon.RedisStore(cfg, ratelimit.Options{Instance: "mx7"})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for mid, account := range map[string]string{
		"arf-5965-original@example.com":          "alice",
		"newsletter-2026-11-27.0042@example.com": "alice",
		"prize-4711@example.com":                 "alice",
		"dsn-original-77@bob.example":            "bob",
		"invoice-overdue-9@bob.example":          "bob",
	} {
		req := ratelimit.Request{Account: account, Sender: "x@" + account + ".example", Recipients: []string{"r@example.org"}, MessageID: "<" + mid + ">",
			Record: &ratelimit.MessageRecord{QueueID: "Q" + strings.ToUpper(account), MessageID: mid, Account: account}}
		if d, err := store.CheckAndCharge(context.Background(), req); err != nil || !d.Allowed {
			t.Fatalf("seeding %s: %+v %v", mid, d, err)
		}
	}

	complain := func(t *testing.T, file string) (complaintJSON, int, string) {
		t.Helper()
		out, errOut, code := runCmd(t, "--config", cfgPath, "complaint", "--json", filepath.Join(complaintSamples, file))
		var v complaintJSON
		if code == 0 {
			if err := json.Unmarshal([]byte(out), &v); err != nil {
				t.Fatalf("%s: %v\n%s", file, err, out)
			}
		}
		return v, code, errOut
	}
	cases := []struct {
		file, account, by, why string
	}{
		{"arf-rfc5965.eml", "alice", "message-id", ""},
		{"dsn.eml", "bob", "message-id", ""},
		{"forwarded-inline.eml", "bob", "message-id", ""},
		{"tracking-only.eml", "carol", "tracking-header", ""},
		{"forged-tracking.eml", "", "", "tracking header forged or altered"},
		{"arf-provider.eml", "alice", "message-id", ""},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			v, code, errOut := complain(t, c.file)
			if code != 0 || v.Account != c.account || v.AttributedBy != c.by || !strings.Contains(v.Reason, c.why) {
				t.Fatalf("exit %d, %+v; want account %q by %q (reason %q)\n%s", code, v, c.account, c.by, c.why, errOut)
			}
			if c.account != "" && c.by == "message-id" && (v.QueueID == "" || v.Instance != "mx7") {
				t.Errorf("queue id %q, instance %q: want the record's", v.QueueID, v.Instance)
			}
		})
	}
	if v, code, _ := complain(t, "arf-rfc5965.eml"); code != 0 || !v.Duplicate || v.Complaints != 2 {
		t.Errorf("the same report again: exit %d, %+v; want a duplicate not counted", code, v)
	}
	mustAccept(t, "alice before her third complaint", f.send(t, "alice", "alice@example.com", 1))
	v, code, _ := complain(t, "forwarded-attached.eml")
	if code != 0 || v.Account != "alice" || v.Complaints != 3 || !v.NewlyLocked || !strings.Contains(v.LockReason, "3 complaints within 168h") {
		t.Fatalf("third complaint about alice: exit %d, %+v; want a lock", code, v)
	}
	f.waitMilterForgets(t, "alice")
	mustRefuse(t, "alice after the lock", f.send(t, "alice", "alice@example.com", 1), 451, "ACCOUNT_LOCKED")

	t.Run("garbage exits 65", func(t *testing.T) {
		if _, code, errOut := complain(t, "garbage.txt"); code != 65 || !strings.Contains(errOut, "not a mail message") {
			t.Fatalf("exit %d, want 65:\n%s", code, errOut)
		}
	})
	t.Run("lists", func(t *testing.T) {
		out, _, code := runCmd(t, "--config", cfgPath, "complaints", "alice")
		if code != 0 || strings.Count(out, "arf-5965-original@example.com") != 1 || !strings.Contains(out, "prize-4711@example.com") {
			t.Errorf("complaints alice: exit %d\n%s", code, out)
		}
		out, _, code = runCmd(t, "--config", cfgPath, "complaints", "--unattributed")
		if code != 0 || !strings.Contains(out, "tracking header forged or altered") {
			t.Errorf("complaints --unattributed: exit %d\n%s", code, out)
		}
	})
	t.Run("events in the audit log", func(t *testing.T) {
		b, _ := os.ReadFile(audit)
		if n := strings.Count(string(b), `"event":"complaint"`); n != 7 {
			t.Errorf("%d complaint events in the audit log, want 7:\n%s", n, b)
		}
		if !strings.Contains(string(b), `"rule":"ACCOUNT_COMPLAINTS"`) {
			t.Errorf("no account_locked event by complaints:\n%s", b)
		}
	})
	t.Run("store down exits 75, and nothing is lost", func(t *testing.T) {
		rs.Kill()
		_, errOut, code := runWith(t, deps{now: time.Now, user: testUser}, "--config", cfgPath, "--timeout", "500ms", "complaint", filepath.Join(complaintSamples, "dsn.eml"))
		if code != 75 {
			t.Fatalf("exit %d, want 75:\n%s", code, errOut)
		}
		rs.Restart()
	})
	t.Run("an unreadable config exits 75 too: the report is never bounced for it", func(t *testing.T) {
		_, errOut, code := runCmd(t, "--config", filepath.Join(dir, "missing.yaml"), "complaint", filepath.Join(complaintSamples, "dsn.eml"))
		if code != 75 {
			t.Fatalf("exit %d, want 75:\n%s", code, errOut)
		}
	})
}

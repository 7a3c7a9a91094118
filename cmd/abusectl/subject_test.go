package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/abusemilter/abusemilter/internal/config"
	"github.com/abusemilter/abusemilter/internal/testutil/redistest"
)

// subjectConfig has an account named by an address (as a sender-login map
// or an ad-hoc account of a login that is an address is named), with
// login_is_address on (the default). %s is the redis address.
const subjectConfig = `
identity:
  accounts:
    carol@example.com:
      logins: [carol@example.com]
      send_as: [carol@example.com]
limits:
  account_messages: ["3/1h"]
  sender_messages: ["50/1h"]
redis:
  url: redis://%s
  key_prefix: "s:"
  timeout: 2s
`

// TestBareAddressSubjects: a bare address is the account of that name when
// one exists, the sender when only that exists, and nothing is changed
// when both or neither exist; status shows both readings side by side.
func TestBareAddressSubjects(t *testing.T) {
	r := redistest.Start(t)
	cfg := writeConfig(t, subjectConfig, r.Addr())
	ctl := func(t *testing.T, args ...string) (string, string, int) {
		t.Helper()
		return runCmd(t, append([]string{"--config", cfg}, args...)...)
	}
	var tt *testing.T // the running subtest
	mustRun := func(args ...string) string {
		t := tt
		t.Helper()
		out, errOut, code := ctl(t, args...)
		if code != exitOK {
			t.Fatalf("abusectl %s: exit %d: %s", strings.Join(args, " "), code, errOut)
		}
		return out
	}
	mustRefuse := func(args ...string) string {
		t := tt
		t.Helper()
		out, errOut, code := ctl(t, args...)
		if code != exitUsage || out != "" {
			t.Fatalf("abusectl %s: exit %d, stdout %q; want a usage error (2) and nothing done", strings.Join(args, " "), code, out)
		}
		return errOut
	}

	t.Run("account", func(t *testing.T) {
		tt = t
		// carol@example.com is a configured account; nothing is known of
		// the sender of that address.
		out := mustRun("status", "carol@example.com")
		if !strings.Contains(out, "names an account and a sender address") || !strings.Contains(out, "acct:carol@example.com (a config entry)") ||
			strings.Index(out, "\nacct:carol@example.com\n") < 0 || strings.Index(out, "\nsender:carol@example.com\n") < strings.Index(out, "\nacct:carol@example.com\n") {
			t.Errorf("status does not show the account and the sender side by side:\n%s", out)
		}
		if !strings.Contains(out, "ACCOUNT_MSG_RATE") || !strings.Contains(out, "Lock:") {
			t.Errorf("status lacks the account's limits and lock:\n%s", out)
		}
		if out := mustRun("lock", "carol@example.com", "--reason", "test lock"); !strings.Contains(out, `locked account "carol@example.com"`) {
			t.Errorf("lock: %s", out)
		}
		var v addressStatusJSON
		if err := json.Unmarshal([]byte(mustRun("status", "carol@example.com", "--json")), &v); err != nil {
			t.Fatal(err)
		}
		if len(v.Readings) != 2 || v.Readings[0].Kind != "acct" || !v.Readings[0].Locked || v.Readings[1].Kind != "sender" {
			t.Errorf("status --json: %+v", v)
		}
		if out := mustRun("unlock", "carol@example.com"); !strings.Contains(out, `unlocked account "carol@example.com"`) {
			t.Errorf("unlock: %s", out)
		}
		if out := mustRun("reset", "carol@example.com"); !strings.Contains(out, "the strikes of acct:carol@example.com") {
			t.Errorf("reset: %s", out)
		}
		if out := mustRun("override", "carol@example.com", "--limit", "messages", "--rate", "10/1h"); !strings.Contains(out, "account_messages of acct:carol@example.com is now 10/1h") {
			t.Errorf("override: %s", out)
		}
		mustRun("override", "carol@example.com", "--limit", "messages", "--remove")
	})

	t.Run("ad-hoc account from the store", func(t *testing.T) {
		tt = t
		// dave@example.com is in no config: an ad-hoc account known only by
		// its lock in the store.
		mustRun("lock", "acct:dave@example.com", "--reason", "compromised")
		if out := mustRun("status", "dave@example.com"); !strings.Contains(out, "acct:dave@example.com (a lock)") || !strings.Contains(out, "LOCKED") {
			t.Errorf("status:\n%s", out)
		}
		if out := mustRun("unlock", "DAVE@example.com"); !strings.Contains(out, `unlocked account "dave@example.com"`) {
			t.Errorf("unlock: %s", out)
		}
	})

	t.Run("sender", func(t *testing.T) {
		tt = t
		mustRun("override", "sender:news@shop.example", "--limit", "sender_messages", "--rate", "5/1h")
		out := mustRun("status", "news@shop.example")
		if !strings.HasPrefix(out, "sender:news@shop.example\n") || !strings.Contains(out, "Shown as a sender: no account is named news@shop.example") {
			t.Errorf("status:\n%s", out)
		}
		errOut := mustRefuse("lock", "news@shop.example", "--reason", "x")
		for _, want := range []string{"names no account that exists, so nothing was changed", `abusectl lock --reason "x" acct:news@shop.example  would lock account "news@shop.example"`} {
			if !strings.Contains(errOut, want) {
				t.Errorf("lock of a sender: %q lacks %q", errOut, want)
			}
		}
		if out := mustRun("override", "news@shop.example", "--limit", "messages", "--remove"); !strings.Contains(out, "removed the override of sender_messages for sender:news@shop.example") {
			t.Errorf("override --remove: %s", out)
		}
		mustRun("override", "news@shop.example", "--limit", "sender_messages", "--rate", "5/1h")
		if out := mustRun("reset", "news@shop.example"); !strings.Contains(out, "reset every counter of sender:news@shop.example") {
			t.Errorf("reset: %s", out)
		}
	})

	t.Run("both", func(t *testing.T) {
		tt = t
		// The account carol@example.com exists (config) and so does the
		// sender of that address (an override).
		mustRun("override", "sender:carol@example.com", "--limit", "sender_messages", "--rate", "7/1h")
		errOut := mustRefuse("reset", "carol@example.com")
		for _, want := range []string{
			`"carol@example.com" is ambiguous, so nothing was changed`,
			"abusectl reset acct:carol@example.com  would clear every counter and the strikes of acct:carol@example.com",
			"abusectl reset sender:carol@example.com  would clear every counter of sender:carol@example.com",
		} {
			if !strings.Contains(errOut, want) {
				t.Errorf("reset: %q lacks %q", errOut, want)
			}
		}
		errOut = mustRefuse("override", "carol@example.com", "--limit", "messages", "--rate", "1/1h")
		if !strings.Contains(errOut, "would set account_messages of acct:carol@example.com to 1/1h") || !strings.Contains(errOut, "would set sender_messages of sender:carol@example.com to 1/1h") {
			t.Errorf("override: %s", errOut)
		}
		// Nothing was applied to a guess.
		out := mustRun("status", "sender:carol@example.com")
		if !strings.Contains(out, "7/1h (override)") {
			t.Errorf("the sender's override changed:\n%s", out)
		}
		if out := mustRun("status", "acct:carol@example.com"); !strings.Contains(out, "Overrides:  none") {
			t.Errorf("the account got an override:\n%s", out)
		}
		// A limit that counts only one kind picks that reading.
		if out := mustRun("override", "carol@example.com", "--limit", "sender_messages", "--remove"); !strings.Contains(out, "for sender:carol@example.com") {
			t.Errorf("override --limit sender_messages: %s", out)
		}
		// Only an account can be locked: not ambiguous.
		if out := mustRun("lock", "carol@example.com", "--reason", "again"); !strings.Contains(out, `locked account "carol@example.com"`) {
			t.Errorf("lock: %s", out)
		}
		mustRun("unlock", "carol@example.com")
	})

	t.Run("neither", func(t *testing.T) {
		tt = t
		out := mustRun("status", "nobody@example.com")
		if !strings.HasPrefix(out, "sender:nobody@example.com\n") || !strings.Contains(out, "no account is named nobody@example.com") {
			t.Errorf("status:\n%s", out)
		}
		errOut := mustRefuse("reset", "nobody@example.com")
		for _, want := range []string{"names neither a known account nor a known sender, so nothing was changed",
			"abusectl reset acct:nobody@example.com", "abusectl reset sender:nobody@example.com"} {
			if !strings.Contains(errOut, want) {
				t.Errorf("reset: %q lacks %q", errOut, want)
			}
		}
		mustRefuse("lock", "nobody@example.com", "--reason", "x")
		mustRefuse("unlock", "nobody@example.com")
		mustRefuse("override", "nobody@example.com", "--limit", "messages", "--rate", "1/1h")
		if out := mustRun("status", "acct:nobody@example.com"); strings.Contains(out, "LOCKED") || !strings.Contains(out, "Overrides:  none") {
			t.Errorf("something was applied:\n%s", out)
		}
	})
}

// TestConfigSourceOrder: abusectl finds its config as abusemilter does
// (--config, else $ABUSEMILTER_CONFIG, else the default path when it
// exists) and names it in what it says about the store.
func TestConfigSourceOrder(t *testing.T) {
	port := itoa(redistest.FreePort(t)) // nothing listens: the error names the store and its config
	def := writeConfig(t, "redis:\n  url: redis://127.0.0.1:%s\n", port)
	envFile := writeConfig(t, "redis:\n  url: redis://127.0.0.1:%s\n", port)
	flagFile := writeConfig(t, "redis:\n  url: redis://127.0.0.1:%s\n", port)
	env := map[string]string{}
	d := deps{user: testUser, lookup: config.Lookup{Getenv: func(k string) string { return env[k] }, DefaultPath: def}}
	check := func(want string, args ...string) {
		t.Helper()
		_, stderr, code := runWith(t, d, append(args, "--timeout", "300ms", "locked")...)
		if code != exitFailed || !strings.Contains(stderr, want) {
			t.Errorf("%v: exit %d, stderr %q; want 1 and %q", args, code, stderr, want)
		}
	}
	check("of " + def + " (the default path) is unreachable")
	env["ABUSEMILTER_CONFIG"] = envFile
	check("of " + envFile + " (from $ABUSEMILTER_CONFIG) is unreachable")
	check("of "+flagFile+" (from --config) is unreachable", "--config", flagFile)
	// Without any: the built-in defaults serve only with --redis.
	d.lookup = config.Lookup{}
	if _, stderr, code := runWith(t, d, "locked"); code != exitUsage || !strings.Contains(stderr, "no config") {
		t.Errorf("no config: exit %d, %q", code, stderr)
	}
}

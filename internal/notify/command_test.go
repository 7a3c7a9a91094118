package notify

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/testutil/testenv"
)

func TestCommandFillsPlaceholders(t *testing.T) {
	ev := Event{Kind: AccountLocked, ID: "abc", Account: "cust42; rm -rf /", Reason: "10 refusals", Rule: "ACCOUNT_MSG_RATE",
		By: "auto", Until: time.Date(2026, 11, 27, 8, 0, 0, 0, time.FixedZone("CET", 3600))}
	got := Command([]string{"/usr/local/sbin/hold", "--account={account}", "--", "{account}", "{reason}", "{rule}", "{by}", "{until}", "{event}", "{event_id}", "{unknown}"}, ev)
	want := []string{"/usr/local/sbin/hold", "--account=cust42; rm -rf /", "--", "cust42; rm -rf /", "10 refusals", "ACCOUNT_MSG_RATE", "auto", "2026-11-27T07:00:00Z", "account_locked", "abc", "{unknown}"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Command =\n%q\nwant\n%q", got, want)
	}
	if u := Command([]string{"{until}"}, Event{}); u[0] != "" {
		t.Errorf("{until} of an open-ended lock = %q, want empty", u[0])
	}
}

// writeScript writes an executable shell script into a temp dir.
func writeScript(t *testing.T, body string) string {
	t.Helper()
	if _, err := os.Stat("/bin/sh"); err != nil {
		testenv.Unavailable(t, "/bin/sh not available: %v", err)
	}
	path := filepath.Join(t.TempDir(), "on-lock.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestOnLockCommandRuns(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	// The script records its arguments (one per line), its environment and
	// its standard input (the event's JSON).
	script := writeScript(t, `for a in "$@"; do printf '%s\n' "$a"; done > "$OUT_DIR/args"
env > "$OUT_DIR/env"
cat > "$OUT_DIR/stdin"
echo "held 3 messages"
`)
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	// The script cannot see the daemon's environment, so the output dir is
	// passed as an argument through a tiny wrapper.
	wrapper := writeScript(t, `OUT_DIR="$1"; export OUT_DIR; shift; exec "$@"`)
	t.Setenv("ABUSEMILTER_TEST_SECRET", "must-not-leak")

	obs := newCounts()
	n := newNotifier(t, Options{
		OnLockCommand: []string{wrapper, out, script, "{account}", "{reason}", "--until={until}"},
		Observer:      obs,
	})
	n.Unlocked("cust42", "admin") // not a lock: no command
	n.Locked("cust42", "10 refusals within 1h; $(reboot)", "ACCOUNT_MSG_RATE", "auto", time.Time{})
	waitFor(t, "the command to run", func() bool { return obs.Sent(SinkCommand)+obs.Failed(SinkCommand) == 1 })
	if obs.Failed(SinkCommand) != 0 {
		t.Fatalf("command failed")
	}

	args, err := os.ReadFile(filepath.Join(out, "args"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "cust42\n10 refusals within 1h; $(reboot)\n--until=\n"; string(args) != want {
		t.Errorf("command arguments = %q, want %q", args, want)
	}
	env, _ := os.ReadFile(filepath.Join(out, "env"))
	if strings.Contains(string(env), "must-not-leak") {
		t.Errorf("the daemon's environment leaked into the command:\n%s", env)
	}
	stdin, _ := os.ReadFile(filepath.Join(out, "stdin"))
	var ev Event
	if err := json.Unmarshal(stdin, &ev); err != nil || ev.Kind != AccountLocked || ev.Account != "cust42" {
		t.Errorf("command stdin = %q (%v), want the lock event's JSON", stdin, err)
	}
}

func TestOnLockCommandWithEcho(t *testing.T) {
	if _, err := os.Stat("/bin/echo"); err != nil {
		testenv.Unavailable(t, "/bin/echo not available: %v", err)
	}
	obs := newCounts()
	n := newNotifier(t, Options{OnLockCommand: []string{"/bin/echo", "hold", "{account}"}, Observer: obs})
	n.Locked("cust1", "r", "", "admin", time.Time{})
	waitFor(t, "echo to run", func() bool { return obs.Sent(SinkCommand) == 1 })
}

func TestOnLockCommandTimeoutKillsProcessGroup(t *testing.T) {
	// A child that outlives the shell would keep the pipes open; the
	// timeout must kill the whole group and return promptly.
	script := writeScript(t, "sleep 60 &\nsleep 60\n")
	obs := newCounts()
	n := newNotifier(t, Options{OnLockCommand: []string{script}, CommandTimeout: 100 * time.Millisecond, Observer: obs})
	n.Locked("cust1", "r", "", "auto", time.Time{})
	waitFor(t, "the timeout to be counted as a failure", func() bool { return obs.Failed(SinkCommand) == 1 })
}

func TestOnLockCommandFailureCounted(t *testing.T) {
	script := writeScript(t, "echo 'postsuper: fatal: not running as root' >&2\nexit 3\n")
	obs := newCounts()
	n := newNotifier(t, Options{OnLockCommand: []string{script}, Observer: obs})
	n.Locked("cust1", "r", "", "auto", time.Time{})
	waitFor(t, "the failure to be counted", func() bool { return obs.Failed(SinkCommand) == 1 })
	if obs.Sent(SinkCommand) != 0 {
		t.Errorf("a failing command counted as sent")
	}
}

func TestCappedBuffer(t *testing.T) {
	b := &cappedBuffer{max: 5}
	b.Write([]byte("abc"))
	b.Write([]byte("defgh"))
	if got := b.String(); got != "abcde [output truncated]" {
		t.Errorf("capped output = %q", got)
	}
}

func TestWebhookCustomTokenHeader(t *testing.T) {
	srv, got := hookServer(t)
	n := newNotifier(t, Options{Webhooks: []Webhook{{URL: srv.URL, Token: "s3", TokenHeader: "X-Hook-Secret", Timeout: 5 * time.Second}}})
	n.Unlocked("a", "admin")
	r := receive(t, got)
	if r.header.Get("X-Hook-Secret") != "s3" || r.header.Get("Authorization") != "" {
		t.Errorf("headers X-Hook-Secret=%q Authorization=%q, want the token in X-Hook-Secret only",
			r.header.Get("X-Hook-Secret"), r.header.Get("Authorization"))
	}
}

func TestWebhookRedirectNotFollowed(t *testing.T) {
	target, got := hookServer(t)
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirect.Close)
	obs := newCounts()
	n := newNotifier(t, Options{Webhooks: []Webhook{{URL: redirect.URL, Token: "s3", Timeout: 5 * time.Second, Retries: 3}}, Observer: obs})
	n.Unlocked("a", "admin")
	waitFor(t, "the redirect to fail", func() bool { return obs.Failed(SinkWebhook) == 1 })
	select {
	case r := <-got:
		t.Errorf("redirect followed to %s: %+v", target.URL, r.event)
	default:
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	opts := Options{Webhooks: []Webhook{{URL: "https://h.example/x", Token: "t0ken-xyz"}}}
	js, err := json.Marshal(opts.Webhooks)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{fmt.Sprintf("%v %+v %#v %s", opts, opts, opts, opts.Webhooks[0].Token), string(js)} {
		if strings.Contains(out, "t0ken-xyz") {
			t.Errorf("token printed: %s", out)
		}
		if !strings.Contains(out, "[redacted]") {
			t.Errorf("no [redacted] in %s", out)
		}
	}
}

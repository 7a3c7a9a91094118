package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/classifier"
	"github.com/abusemilter/abusemilter/internal/complaint"
	"github.com/abusemilter/abusemilter/internal/config"
	"github.com/abusemilter/abusemilter/internal/daemon"
	"github.com/abusemilter/abusemilter/internal/testutil/redistest"
	"github.com/abusemilter/abusemilter/internal/testutil/testenv"
	"github.com/abusemilter/abusemilter/ratelimit"
	"github.com/abusemilter/abusemilter/scoring"
)

// toolBuilds holds one *toolBuild per command built for the tests.
var toolBuilds sync.Map

type toolBuild struct {
	once sync.Once
	path string
	err  error
}

// toolBinary builds one of the other commands (cmd/NAME) once per test
// run, beside the daemon.
func toolBinary(t *testing.T, name string) string {
	t.Helper()
	v, _ := toolBuilds.LoadOrStore(name, &toolBuild{})
	b := v.(*toolBuild)
	b.once.Do(func() {
		b.path = filepath.Join(filepath.Dir(binary(t)), name)
		if out, err := exec.Command("go", "build", "-o", b.path, "../"+name).CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build %s: %v\n%s", name, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// abusectlBinary builds abusectl once per test run, beside the daemon.
func abusectlBinary(t *testing.T) string { return toolBinary(t, "abusectl") }

// ctlResult is one abusectl run.
type ctlResult struct {
	code   int
	stdout string
	stderr string
}

// abusectl runs the built abusectl with the given config and arguments.
func abusectl(t *testing.T, config string, stdin []byte, args ...string) ctlResult {
	t.Helper()
	cmd := exec.Command(abusectlBinary(t), append([]string{"--config", config}, args...)...)
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	res := ctlResult{stdout: out.String(), stderr: errOut.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		res.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("abusectl %q: %v", args, err)
	}
	return res
}

// trackingKey signs the tracking headers of the end-to-end tests.
const trackingKey = "e2e-tracking-key-0123456789"

// e2eDeskConfig holds messages three ways: mallory's account is locked
// with lock_action hold; URL_RAW_IP has the action hold; and DATE_OLD,
// scored 6 here, reaches hold_threshold 5 (below reject_threshold 10). The
// release and purge commands are postsuper on the test's Postfix.
const e2eDeskConfig = `
listen: inet:127.0.0.1:%d
instance: mx-test
dns:
  enabled: false
redis:
  url: redis://%s
identity:
  accounts:
    alice:
      logins: [alice]
      send_as: [example.com]
    mallory:
      logins: [mallory]
      send_as: [mallory.example]
strikes:
  lock_action: hold
rules:
  hold_threshold: 5
  scores:
    DATE_OLD: 6
  actions:
    URL_RAW_IP: hold
desk:
  release_command: %s
  purge_command: %s
  deliver_command: %s
  complaints:
    threshold: 1
  tracking:
    accounts: [alice]
    feedback_id: "{account}:e2e-hosting"
    key_file: %s
  training:
    released_dir: %s
    purged_dir: %s
    copy_command: %s
notify:
  audit_log: %s
`

// trainingCopy checks the desk's training copy of a released or purged
// message: one file named for its queue id in folder, a message with its
// Subject and body and without postcat's framing.
func trainingCopy(t *testing.T, folder, qid, subject, body string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(folder, "*-"+qid+".eml"))
	if len(files) != 1 {
		t.Fatalf("training copies of %s in %s: %q, want one", qid, folder, files)
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	m, err := scoring.ParseBytes(data, 1<<20)
	if err != nil || m.Get("Subject") != subject || !strings.Contains(string(m.Body), body) || strings.Contains(string(data), "*** ") {
		t.Errorf("training copy %s (%v): Subject %q, body %q, want %q, %q, no postcat framing:\n%s", files[0], err, m.Get("Subject"), m.Body, subject, body, data)
	}
}

// TestEndToEndPostfixHold drives the abuse desk's loop through a real
// Postfix: a message the milter holds gets 250, lands on Postfix's hold
// queue, is listed by abusectl held with its queue id, and is delivered
// after abusectl release, or deleted for good by abusectl purge; for a
// locked account with lock_action hold, a rule with the action hold and
// hold_threshold.
func TestEndToEndPostfixHold(t *testing.T) {
	testenv.RequireTool(t, "postfix")
	testenv.RequireTool(t, "swaks")
	testenv.RequireRoot(t, "Postfix's master starts as root")

	rs := redistest.Start(t)
	port := redistest.FreePort(t)
	sink := testenv.StartSink(t)
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{
		SMTPDMilter:          fmt.Sprintf("inet:127.0.0.1:%d", port),
		MilterDefaultAction:  "tempfail",
		MilterCommandTimeout: 10 * time.Second,
		MilterContentTimeout: 20 * time.Second,
		RelayTo:              sink.Addr(),
	})
	argv := func(extra ...string) string {
		b, _ := json.Marshal(append(pf.Postsuper(), extra...))
		return string(b)
	}
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "tracking.key")
	if err := os.WriteFile(keyFile, []byte(trackingKey), 0o600); err != nil {
		t.Fatal(err)
	}
	audit := filepath.Join(dir, "audit.jsonl")
	// The training copies: postcat of this Postfix instance.
	releasedDir, purgedDir := filepath.Join(dir, "released"), filepath.Join(dir, "purged")
	for _, d := range []string{releasedDir, purgedDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	postcat, _ := json.Marshal([]string{filepath.Join(filepath.Dir(pf.Postsuper()[0]), "postcat"), "-c", pf.ConfigDir, "-bh", "-q", "{queue_id}"})
	cfgPath := writeConfig(t, dir, fmt.Sprintf(e2eDeskConfig, port, rs.Addr(),
		argv("-H", "{queue_id}"), argv("-d", "{queue_id}", "hold"), pf.Postqueue("-i", "{queue_id}"), keyFile,
		releasedDir, purgedDir, string(postcat), audit))
	p := startDaemon(t, "--config", cfgPath)
	p.waitLog(t, "abusemilter ready", 0)

	send := func(t *testing.T, login string, data string) (testenv.SwaksResult, string) {
		t.Helper()
		res := testenv.Swaks(t, testenv.SwaksOptions{Server: pf.Addr(), From: login + "@" + map[string]string{"alice": "example.com", "mallory": "mallory.example"}[login],
			To: []string{"bob@example.org"}, XClientLogin: login, XClientAddr: "203.0.113.10", Data: []byte(data)})
		if res.ExitCode != testenv.SwaksOK || !strings.HasPrefix(res.EndOfDataReply(), "250 ") {
			t.Fatalf("swaks exit %d, end of data %q, want 0 and 250:\n%s", res.ExitCode, res.EndOfDataReply(), res.Transcript)
		}
		m := regexp.MustCompile(`queued as ([0-9A-Za-z]+)`).FindStringSubmatch(res.EndOfDataReply())
		if m == nil {
			t.Fatalf("no queue id in %q", res.EndOfDataReply())
		}
		return res, m[1]
	}
	message := func(from, subject, date, body string) string {
		return "From: " + from + "\r\nTo: bob@example.org\r\nSubject: " + subject + "\r\nDate: " + date +
			"\r\nMessage-ID: <" + subject + "@e2e.test>\r\n\r\n" + body + "\r\n"
	}
	now := time.Now().Format(time.RFC1123Z)
	onHold := func(t *testing.T, qid string) {
		t.Helper()
		deadline := time.Now().Add(e2eWait)
		for {
			var queues []string
			for _, e := range pf.Queue(t) {
				if e.QueueID == qid {
					queues = append(queues, e.QueueName)
				}
			}
			if slices.Equal(queues, []string{"hold"}) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("queue id %s: postqueue -j shows it in %q, want hold", qid, queues)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	gone := func(t *testing.T, qid string) {
		t.Helper()
		redistest.WaitFor(t, e2eWait, "queue id "+qid+" to leave the queue", func() bool {
			return !slices.ContainsFunc(pf.Queue(t), func(e testenv.QueueEntry) bool { return e.QueueID == qid })
		})
	}
	listed := func(t *testing.T, qid, account, rule string) {
		t.Helper()
		res := abusectl(t, cfgPath, nil, "held", "--json")
		var v struct {
			Held []struct {
				QueueID                 string `json:"queue_id"`
				Instance, Account, Rule string
				Status, Subject, Reason string
			} `json:"held"`
		}
		if res.code != 0 || json.Unmarshal([]byte(res.stdout), &v) != nil {
			t.Fatalf("abusectl held --json: exit %d\n%s%s", res.code, res.stdout, res.stderr)
		}
		for _, h := range v.Held {
			if h.QueueID == qid {
				if h.Account != account || h.Rule != rule || h.Instance != "mx-test" || h.Status != "held" {
					t.Errorf("abusectl held lists %+v, want account %s, rule %s, instance mx-test, status held", h, account, rule)
				}
				text := abusectl(t, cfgPath, nil, "held", account)
				if !strings.Contains(text.stdout, qid) || !strings.Contains(text.stdout, rule) {
					t.Errorf("abusectl held %s does not show %s and %s:\n%s", account, qid, rule, text.stdout)
				}
				return
			}
		}
		t.Fatalf("abusectl held does not list queue id %s:\n%s", qid, res.stdout)
	}
	release := func(t *testing.T, action, qid string) {
		t.Helper()
		res := abusectl(t, cfgPath, nil, action, qid)
		want := map[string]string{"release": "released", "purge": "purged"}[action]
		if res.code != 0 || !strings.Contains(res.stdout, qid+": "+want+" (on mx-test)") {
			t.Fatalf("abusectl %s %s: exit %d, want 0 and %q:\n%s%s", action, qid, res.code, want, res.stdout, res.stderr)
		}
	}
	arrives := func(t *testing.T, subject string) testenv.SinkMessage {
		t.Helper()
		return sink.WaitFor(t, e2eWait, "Subject "+subject, func(m testenv.SinkMessage) bool { return m.Header("Subject") == subject })
	}
	neverArrived := func(t *testing.T, subject string) {
		t.Helper()
		for _, m := range sink.Messages() {
			if m.Header("Subject") == subject {
				t.Errorf("purged message %q reached the sink", subject)
			}
		}
	}

	t.Run("a locked account's mail is held; release delivers it, purge deletes it", func(t *testing.T) {
		if res := abusectl(t, cfgPath, nil, "lock", "mallory", "--reason", "compromised, ticket 17"); res.code != 0 {
			t.Fatalf("abusectl lock: exit %d\n%s%s", res.code, res.stdout, res.stderr)
		}
		_, qid := send(t, "mallory", message("mallory@mallory.example", "hold-lock-1", now, "first"))
		onHold(t, qid)
		pf.WaitLog(t, regexp.MustCompile(qid+`: milter-hold: END-OF-MESSAGE .*milter triggers HOLD action`), e2eWait)
		listed(t, qid, "mallory", "ACCOUNT_LOCKED")
		_, qid2 := send(t, "mallory", message("mallory@mallory.example", "hold-lock-2", now, "second"))
		onHold(t, qid2)

		release(t, "release", qid)
		arrives(t, "hold-lock-1")
		release(t, "purge", qid2)
		gone(t, qid2)
		// Each decision's folder got the message as queued (postcat -bh),
		// as a file that abusescan learn reads.
		trainingCopy(t, releasedDir, qid, "hold-lock-1", "first")
		trainingCopy(t, purgedDir, qid2, "hold-lock-2", "second")

		// Releasing again says the message is no longer held.
		again := abusectl(t, cfgPath, nil, "release", qid)
		if again.code != 1 || !strings.Contains(again.stdout, qid+": not-held") || !strings.Contains(again.stdout, "no longer held: released by") {
			t.Errorf("second release: exit %d, want 1 and \"no longer held\":\n%s%s", again.code, again.stdout, again.stderr)
		}
		held := abusectl(t, cfgPath, nil, "held", "mallory")
		if strings.Contains(held.stdout, qid) || strings.Contains(held.stdout, qid2) {
			t.Errorf("abusectl held still lists released or purged messages:\n%s", held.stdout)
		}
		p.waitLog(t, "desk request carried out", 0)
	})

	t.Run("a rule with the action hold holds the message", func(t *testing.T) {
		// The client's own tracking header (copied from another account's
		// mail) is removed; the milter adds alice's.
		forged := "X-Abuse-Tracking: " + complaint.Track([]byte(trackingKey), "mallory", time.Now()) + "\r\n"
		_, qid := send(t, "alice", forged+message("alice@example.com", "hold-rule", now, "log in at http://8.8.8.8/login"))
		onHold(t, qid)
		listed(t, qid, "alice", "URL_RAW_IP")
		release(t, "release", qid)
		m := arrives(t, "hold-rule")
		if got := m.Header("Feedback-ID"); got != "alice:e2e-hosting" {
			t.Errorf("Feedback-ID %q, want alice:e2e-hosting", got)
		}
		if v := regexp.MustCompile(`(?m)^X-Abuse-Tracking: *(\S+)\r$`).FindAllStringSubmatch(string(m.Data), -1); len(v) != 1 {
			t.Errorf("tracking headers %q, want one (alice's)", v)
		} else if acct, _, err := complaint.Verify([]byte(trackingKey), v[0][1], time.Now(), time.Hour); err != nil || acct != "alice" {
			t.Errorf("tracking header %q: %q, %v; want alice's", v[0][1], acct, err)
		}
	})

	t.Run("hold_threshold holds the message", func(t *testing.T) {
		_, qid := send(t, "alice", message("alice@example.com", "hold-threshold", "Mon, 01 Jan 2001 10:00:00 +0000", "old"))
		onHold(t, qid)
		listed(t, qid, "alice", "DATE_OLD")
		release(t, "purge", qid)
		gone(t, qid)
		// what the sink received by now: the purged messages are not there
		arrives(t, "hold-rule")
		neverArrived(t, "hold-threshold")
		neverArrived(t, "hold-lock-2")
	})

	t.Run("a message deleted on the MTA by hand is not-held", func(t *testing.T) {
		_, qid := send(t, "alice", message("alice@example.com", "hold-gone", now, "see http://8.8.8.8/x"))
		onHold(t, qid)
		if out, err := exec.Command(pf.Postsuper()[0], append(pf.Postsuper()[1:], "-d", qid, "hold")...).CombinedOutput(); err != nil {
			t.Fatalf("postsuper -d: %v\n%s", err, out)
		}
		res := abusectl(t, cfgPath, nil, "release", qid)
		if res.code != 1 || !strings.Contains(res.stdout, qid+": not-held (on mx-test)") {
			t.Fatalf("release of a message no longer on hold: exit %d, want 1 and not-held:\n%s%s", res.code, res.stdout, res.stderr)
		}
	})

	t.Run("events: held, released and purged, with who", func(t *testing.T) {
		redistest.WaitFor(t, e2eWait, "the audit log's events", func() bool {
			b, _ := os.ReadFile(audit)
			return strings.Count(string(b), `"event":"message_held"`) >= 5 && strings.Contains(string(b), `"event":"message_released"`) &&
				strings.Contains(string(b), `"event":"message_purged"`)
		})
		b, _ := os.ReadFile(audit)
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, `"event":"message_purged"`) && (!strings.Contains(line, `"status":"purged"`) || !strings.Contains(line, `"instance":"mx-test"`) ||
				!regexp.MustCompile(`"by":"[^"]+"`).MatchString(line)) {
				t.Errorf("purge event without status, instance or by: %s", line)
			}
		}
	})

	t.Run("unlock --release-held unlocks and releases in one step", func(t *testing.T) {
		_, qid := send(t, "mallory", message("mallory@mallory.example", "hold-lock-3", now, "third"))
		onHold(t, qid)
		res := abusectl(t, cfgPath, nil, "unlock", "mallory", "--release-held")
		if res.code != 0 || !strings.Contains(res.stdout, `unlocked account "mallory"`) || !strings.Contains(res.stdout, qid+": released") {
			t.Fatalf("abusectl unlock --release-held: exit %d\n%s%s", res.code, res.stdout, res.stderr)
		}
		arrives(t, "hold-lock-3")
	})

	t.Run("a complaint locks the account at the threshold; its next message is held", func(t *testing.T) {
		// alice's message leaves (its Message-ID record is written), a
		// recipient forwards it to the abuse desk with the original attached
		_, qid := send(t, "alice", message("alice@example.com", "complained-about", now, "hello"))
		original := arrives(t, "complained-about")
		report := "From: Jane <jane@recipient.example>\r\nTo: abuse@example.net\r\nSubject: Fwd: spam\r\nMessage-ID: <fwd-e2e@recipient.example>\r\n" +
			"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nspam from your customer\r\n" +
			"--b1\r\nContent-Type: message/rfc822\r\n\r\n" + string(original.Data) + "\r\n--b1--\r\n"
		res := abusectl(t, cfgPath, []byte(report), "complaint", "-")
		if res.code != 0 || !strings.Contains(res.stdout, `account "alice" by message-id (queue id `+qid+` on mx-test)`) || !strings.Contains(res.stdout, "account LOCKED") {
			t.Fatalf("abusectl complaint: exit %d\n%s%s", res.code, res.stdout, res.stderr)
		}
		_, next := send(t, "alice", message("alice@example.com", "after-the-complaint", now, "hello again"))
		onHold(t, next)
		listed(t, next, "alice", "ACCOUNT_LOCKED")
	})

	t.Run("abusescan learn trains on the desk's training copies", func(t *testing.T) {
		count := func(folder string) int {
			files, _ := filepath.Glob(filepath.Join(folder, "*.eml"))
			return len(files)
		}
		ham, spam := count(releasedDir), count(purgedDir)
		if ham == 0 || spam == 0 {
			t.Fatalf("training copies: %d released, %d purged; the subtests above release and purge some", ham, spam)
		}
		model := filepath.Join(dir, "classifier.model")
		out, err := exec.Command(toolBinary(t, "abusescan"), "learn", "--spam", purgedDir, "--ham", releasedDir, "-o", model, "--hold-out", "0").CombinedOutput()
		if want := fmt.Sprintf("on %d ham / %d spam", ham, spam); err != nil || !strings.Contains(string(out), want) {
			t.Fatalf("abusescan learn: %v, want %q:\n%s", err, want, out)
		}
		if m, err := classifier.Load(model); err != nil || m.Summary().Ham != ham || m.Summary().Spam != spam {
			t.Errorf("the model learnt: %v", err)
		}
	})
}

// TestEndToEndComplaintPipe delivers a feedback-loop report through
// Postfix's local delivery to the documented pipe alias ("|abusectl
// complaint -"), run as nobody: with the rate store down abusectl exits 75
// and Postfix keeps the report queued; once the store is back and the
// queue is flushed, the report is delivered and the complaint recorded
// against the account that sent the original.
func TestEndToEndComplaintPipe(t *testing.T) {
	testenv.RequireTool(t, "postfix")
	testenv.RequireTool(t, "swaks")
	testenv.RequireRoot(t, "Postfix's master starts as root")

	rs := redistest.Start(t)
	// What the pipe runs must be readable by nobody: a 0755 directory.
	dir, err := os.MkdirTemp("", "complaint-pipe-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctl := filepath.Join(dir, "abusectl")
	b, err := os.ReadFile(abusectlBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ctl, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "abusemilter.yaml")
	cfg := fmt.Sprintf("redis:\n  url: redis://%s\nidentity:\n  accounts:\n    alice:\n      logins: [alice]\n      send_as: [example.com]\n", rs.Addr())
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	sink := testenv.StartSink(t)
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{
		RelayTo:     sink.Addr(),
		LocalDomain: "example.net",
		Aliases:     map[string]string{"abuse-fbl": `"|` + ctl + ` --config ` + cfgPath + ` complaint -"`},
	})
	report, err := os.ReadFile("../../testdata/complaints/arf-provider.eml")
	if err != nil {
		t.Fatal(err)
	}

	rs.Kill()
	res := testenv.Swaks(t, testenv.SwaksOptions{Server: pf.Addr(), From: "fbl-bounce@feedback.mailbox-provider.example",
		To: []string{"abuse-fbl@example.net"}, Data: report})
	if res.ExitCode != testenv.SwaksOK {
		t.Fatalf("swaks exit %d:\n%s", res.ExitCode, res.Transcript)
	}
	m := regexp.MustCompile(`queued as ([0-9A-Za-z]+)`).FindStringSubmatch(res.EndOfDataReply())
	if m == nil {
		t.Fatalf("no queue id in %q", res.EndOfDataReply())
	}
	qid := m[1]
	pf.WaitLog(t, regexp.MustCompile(qid+`: to=<abuse-fbl@example.net>.*status=deferred \(temporary failure`), e2eWait)
	if !slices.ContainsFunc(pf.Queue(t), func(e testenv.QueueEntry) bool { return e.QueueID == qid && e.QueueName == "deferred" }) {
		t.Fatalf("the report is not in the deferred queue: %+v", pf.Queue(t))
	}

	// The store is back (empty: this test's Redis keeps nothing on disk),
	// with the Message-ID record the milter writes as alice's newsletter
	// leaves.
	rs.Restart()
	seedRecord(t, cfgPath, "alice", "newsletter-2026-11-27.0042@example.com")
	pf.Flush(t)
	pf.WaitLog(t, regexp.MustCompile(qid+`: to=<abuse-fbl@example.net>.*status=sent \(delivered to command`), e2eWait)
	out := abusectl(t, cfgPath, nil, "complaints", "alice", "--json")
	if out.code != 0 || !strings.Contains(out.stdout, `"message_id": "newsletter-2026-11-27.0042@example.com"`) || !strings.Contains(out.stdout, `"attributed_by": "message-id"`) {
		t.Fatalf("abusectl complaints alice: exit %d\n%s%s", out.code, out.stdout, out.stderr)
	}
}

// seedRecord writes the Message-ID record of an accepted message of
// account, as the milter does, through the store of a config.
func seedRecord(t *testing.T, cfgPath, account, messageID string) {
	t.Helper()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	store, err := daemon.RedisStore(cfg, ratelimit.Options{Instance: "mx-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	req := ratelimit.Request{Account: account, Sender: account + "@example.com", Recipients: []string{"r@example.org"}, MessageID: "<" + messageID + ">",
		Record: &ratelimit.MessageRecord{QueueID: "4QSEED", MessageID: messageID, Account: account}}
	if d, err := store.CheckAndCharge(context.Background(), req); err != nil || !d.Allowed {
		t.Fatalf("seeding the record of %s: %+v %v", messageID, d, err)
	}
}

// TestAcceptedMailOneStoreCall sends accepted messages through the built
// daemon with every desk record on (the Message-ID record, the tracking
// headers) and counts the commands Redis got for them: one script call per
// message in INFO commandstats, and nothing else from the daemon in
// MONITOR (which tells the client's commands from those the script runs;
// the desk executor's RPOP, polled every few seconds whatever the traffic,
// and the subscription's PING are left out).
func TestAcceptedMailOneStoreCall(t *testing.T) {
	rs := redistest.Start(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "tracking.key")
	if err := os.WriteFile(keyFile, []byte(trackingKey), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`
listen: inet:127.0.0.1:0
dns:
  enabled: false
redis:
  url: redis://%s
identity:
  accounts:
    alice:
      logins: [alice]
      send_as: [example.com]
desk:
  tracking:
    accounts: [alice]
    feedback_id: "{account}:hosting"
    key_file: %s
`, rs.Addr(), keyFile)
	p := startDaemon(t, "--config", writeConfig(t, dir, cfg))
	addr := milterAddr(t, p)
	// one message first: the script is loaded, the pool warm
	sendAccepted := func(i int) {
		s := clientSession(t, addr)
		defer s.Close()
		if a := startMessage(t, s, 1); a.Code != 'c' {
			t.Fatalf("rcpt: %+v", a)
		}
		act(t, "header")(s.HeaderField("From", "alice@example.com"))
		act(t, "header")(s.HeaderField("Message-ID", fmt.Sprintf("<one-call-%d@example.com>", i)))
		act(t, "eoh")(s.HeaderEnd())
		mods, a, err := s.BodyReadFrom(strings.NewReader("hello\r\n"))
		if err != nil || a.Code != 'a' {
			t.Fatalf("end of message: %+v %v", a, err)
		}
		if len(mods) != 2 {
			t.Fatalf("modifications %+v, want the Feedback-ID and tracking headers", mods)
		}
	}
	sendAccepted(0)
	// INFO commandstats counts the commands a script runs too; MONITOR
	// tells the client's own commands ("[0 127.0.0.1:PORT]") from the
	// script's ("[0 lua]").
	mon, err := net.Dial("tcp", rs.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close()
	fmt.Fprintf(mon, "MONITOR\r\n")
	lines := bufio.NewReader(mon)
	if l, err := lines.ReadString('\n'); err != nil || !strings.HasPrefix(l, "+OK") {
		t.Fatalf("MONITOR: %q %v", l, err)
	}
	before := commandCalls(t, rs, "evalsha") + commandCalls(t, rs, "eval")
	const n = 100
	for i := 1; i <= n; i++ {
		sendAccepted(i)
	}
	scripts := commandCalls(t, rs, "evalsha") + commandCalls(t, rs, "eval") - before
	if _, err := rs.Do("SET", "monitor-end", "1"); err != nil {
		t.Fatal(err)
	}
	client := map[string]int{}
	for {
		l, err := lines.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(l, `"monitor-end"`) {
			break
		}
		m := regexp.MustCompile(`\[\d+ ([^\]]+)\] "(\w+)"`).FindStringSubmatch(l)
		if m == nil || m[1] == "lua" {
			continue
		}
		client[strings.ToLower(m[2])]++
	}
	delete(client, "rpop") // the desk executor's poll
	delete(client, "ping") // the subscription's health check
	delete(client, "info")
	if scripts != n || client["evalsha"]+client["eval"] != n || len(client) > 2 || (len(client) == 2 && client["eval"] == 0) {
		t.Fatalf("%d accepted messages: %d script calls, the client's commands %v; want %d script calls and nothing else", n, scripts, client, n)
	}
	t.Logf("%d accepted messages (Message-ID records and tracking headers on): %d script calls, client commands %v", n, scripts, client)
	rec, err := rs.Do("GET", "am:mid:one-call-7@example.com")
	if err != nil || !strings.Contains(rec, `"account":"alice"`) || !strings.Contains(rec, `"u":[["a","msgs",200,3600000000,`) {
		t.Fatalf("the Message-ID record: %q %v", rec, err)
	}
}

// commandCalls reads the call count of a command from INFO commandstats.
func commandCalls(t *testing.T, srv *redistest.Server, cmd string) int {
	t.Helper()
	v := srv.Info("commandstats", "cmdstat_"+cmd)
	calls, _, _ := strings.Cut(strings.TrimPrefix(v, "calls="), ",")
	n, _ := strconv.Atoi(calls)
	return n
}

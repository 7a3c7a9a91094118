package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/config"
	"github.com/abusemilter/abusemilter/internal/daemon"
	"github.com/abusemilter/abusemilter/internal/testutil/redistest"
	"github.com/abusemilter/abusemilter/internal/trial"
	"github.com/abusemilter/abusemilter/milter"
	"github.com/abusemilter/abusemilter/ratelimit"
)

// TestTrialProtocolConstants: the client (internal/trial) and the daemon
// (milter/) name the trial macro and headers alike.
func TestTrialProtocolConstants(t *testing.T) {
	if trial.MacroTrial != milter.MacroTrial || trial.HeaderTrial != milter.HeaderTrial || trial.HeaderTrialFinding != milter.HeaderTrialFinding {
		t.Errorf("client %q %q %q, daemon %q %q %q", trial.MacroTrial, trial.HeaderTrial, trial.HeaderTrialFinding,
			milter.MacroTrial, milter.HeaderTrial, milter.HeaderTrialFinding)
	}
}

// goldenDir holds the golden messages: NAME.eml with NAME.expected, whose
// first line names the account that sends it (scoring/golden_test.go).
const goldenDir = "../../testdata/messages"

// goldenConfig is scoring's test set-up as a daemon config: the accounts
// of testAccounts (each login named as its account), the provider's MTAs
// and customer domains of testSettings, no DNS, no recipient cap, limits
// that the golden messages do not reach.
const goldenConfig = `
listen: inet:127.0.0.1:0
metrics:
  listen: 127.0.0.1:0
dns:
  enabled: false
identity:
  login_is_address: false
  accounts:
    alice: {logins: [alice], send_as: [example.com]}
    smith: {logins: [smith], send_as: [smith-law.com]}
    idn: {logins: [idn], send_as: [xn--bcher-kva.de]}
    paypa1: {logins: [paypa1], send_as: [paypa1.com]}
    fwd: {logins: [fwd], send_as: [any, lists.example.com], forwarder: true}
    shop: {logins: [shop], send_as: [shop.example], web_app: true}
    hosting: {logins: [hosting], send_as: [any, hosting.example]}
    webmail: {logins: [webmail], send_as: [example.org]}
    gardener: {logins: [gardener], send_as: [apple-orchard.example]}
limits:
  max_recipients_per_message: 0
  account_messages: [1000/1h]
strikes:
  threshold: 1000
rules:
  own_mtas: [mx.provider.net, smtp.provider.net]
  customer_domains: [example.com, smith-law.com, smithlaw.com, bakery-berlin.de]
`

// daemonBinary builds cmd/abusemilter once.
var daemonBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "abusescan-test-daemon")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "abusemilter")
	if out, err := exec.Command("go", "build", "-o", bin, "../abusemilter").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ../abusemilter: %v\n%s", err, out)
	}
	return bin, nil
})

// runningDaemon is the built daemon with its ready line.
type runningDaemon struct {
	listen, trial, metrics string
	log                    *strings.Builder
	mu                     *sync.Mutex
}

// startBuiltDaemon starts the built daemon with cfg and waits for its ready line.
func startBuiltDaemon(t *testing.T, cfgPath string) *runningDaemon {
	t.Helper()
	bin, err := daemonBinary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", cfgPath, "--log-format", "json")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	d := &runningDaemon{log: &strings.Builder{}, mu: &sync.Mutex{}}
	ready := make(chan map[string]any, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			d.mu.Lock()
			d.log.WriteString(sc.Text() + "\n")
			d.mu.Unlock()
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "abusemilter ready" {
				ready <- m
			}
		}
	}()
	select {
	case m := <-ready:
		d.listen, _ = m["listen"].(string)
		d.trial, _ = m["trial_listen"].(string)
		d.metrics, _ = m["metrics"].(string)
	case <-time.After(20 * time.Second):
		d.mu.Lock()
		defer d.mu.Unlock()
		t.Fatalf("daemon not ready; log:\n%s", d.log)
	}
	return d
}

// milterAddr turns a ready line's "tcp:HOST:PORT" or "unix:PATH" into
// --milter's notation.
func milterAddr(s string) string {
	if a, ok := strings.CutPrefix(s, "tcp:"); ok {
		return "inet:" + a
	}
	return s
}

// metric reads one sample from the daemon's /metrics ("" labels: the
// family's sum over its series).
func (d *runningDaemon) metric(t *testing.T, family string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + d.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		name, _, _ := strings.Cut(line, " ")
		name, _, _ = strings.Cut(name, "{")
		if name != family {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// goldenAccount reads the account a golden message is sent as.
func goldenAccount(t *testing.T, name string) string {
	t.Helper()
	acct := goldenSetup(t, name, "account")
	if acct == "" {
		t.Fatalf("%s.expected names no account", name)
	}
	return acct
}

// goldenSetup reads one set-up line of a golden message ("" when absent).
func goldenSetup(t *testing.T, name, key string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(goldenDir, name+".expected"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "---" {
			break
		}
		if v, ok := strings.CutPrefix(line, key+": "); ok {
			return v
		}
	}
	return ""
}

// firstJSON decodes the first line of a JSON-lines report.
func firstJSON(t *testing.T, what, out string) map[string]any {
	t.Helper()
	line, _, _ := strings.Cut(out, "\n")
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("%s: not a JSON line: %q", what, out)
	}
	return m
}

// findingKeys renders a report's findings as "RULE score: reason" lines.
func findingKeys(m map[string]any) []string {
	var out []string
	fs, _ := m["findings"].([]any)
	for _, f := range fs {
		f := f.(map[string]any)
		out = append(out, fmt.Sprintf("%v %v: %v", f["rule"], f["score"], f["reason"]))
	}
	return out
}

// TestMilterTrialMatchesOfflineScan sends every golden message through the
// built daemon's trial listener with abusescan --milter and checks that the
// daemon's verdict, reply, deciding rule and findings are those of the
// offline scan of the same message with the same config; then that the
// accounts' counters and strikes in the shared store did not move, while
// one message sent with --charge does move them, and that the trial macro
// on the main listener is refused.
func TestMilterTrialMatchesOfflineScan(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "trial.sock")
	cfgPath := filepath.Join(dir, "abusemilter.yaml")
	cfgText := goldenConfig + "redis:\n  url: redis://" + srv.Addr() + "/0\n  key_prefix: \"golden:\"\ntrial:\n  listen: unix:" + sock + "\n"
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startBuiltDaemon(t, cfgPath)
	if d.trial != "unix:"+sock {
		t.Fatalf("ready line trial_listen = %q, want unix:%s", d.trial, sock)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("trial socket: %v %v, want mode 0600", fi, err)
	}

	emls, _ := filepath.Glob(filepath.Join(goldenDir, "*.eml"))
	if len(emls) < 60 {
		t.Fatalf("%d golden messages, want at least 60", len(emls))
	}
	accounts := map[string]bool{}
	trials := 0
	for _, eml := range emls {
		name := strings.TrimSuffix(filepath.Base(eml), ".eml")
		acct := goldenAccount(t, name)
		accounts[acct] = true
		t.Run(name, func(t *testing.T) {
			off := execute(t, scanInputs, "--config", cfgPath, "--account", acct, "--format", "json", "--fail-on", "never", "--no-progress", "-j", "1", eml)
			if off.code != exitOK {
				t.Fatalf("offline scan: exit %d: %s", off.code, off.stderr)
			}
			args := []string{"--milter", "unix:" + sock, "--login", acct, "--format", "json", "--fail-on", "never", eml}
			if o := firstJSON(t, "offline", off.stdout); o["summary"] == true {
				// Not readable as a message: neither scan sends it.
				tr := execute(t, scanInputs, args...)
				if m := firstJSON(t, "--milter", tr.stdout); tr.code != exitOK || m["summary"] != true || m["messages"] != 0.0 || m["unreadable"] != o["unreadable"] {
					t.Errorf("an input the offline scan cannot read: --milter exit %d, %q", tr.code, tr.stdout)
				}
				return
			}
			if firstJSON(t, "offline", off.stdout)["envelope_from"] == "" {
				// No sender in the message: the offline scan takes it as
				// unknown, a milter needs one; the set-up's is used.
				args = append(args, "--mail-from", goldenSetup(t, name, "mail-from"))
			}
			if rcpt := goldenSetup(t, name, "rcpt"); len(firstJSON(t, "offline", off.stdout)["recipients"].([]any)) == 0 {
				// A message without To, Cc or Bcc: an MTA needs a
				// recipient all the same; the set-up's is used.
				args = append(args, "--rcpt", rcpt)
			}
			tr := execute(t, scanInputs, args...)
			if tr.code != exitOK {
				t.Fatalf("abusescan --milter: exit %d: %s", tr.code, tr.stderr)
			}
			o, m := firstJSON(t, "offline", off.stdout), firstJSON(t, "--milter", tr.stdout)
			if m["stage"] == "eom" {
				trials++
				if m["trial"] != true {
					t.Errorf("the daemon did not confirm the trial: %v", m)
				}
			}
			for _, k := range []string{"verdict", "reply", "rule"} {
				if o[k] != m[k] {
					t.Errorf("%s: offline %q, milter %q", k, o[k], m[k])
				}
			}
			if of, mf := findingKeys(o), findingKeys(m); strings.Join(of, "\n") != strings.Join(mf, "\n") {
				t.Errorf("findings differ:\noffline:\n  %s\nmilter:\n  %s", strings.Join(of, "\n  "), strings.Join(mf, "\n  "))
			}
			if o["verdict"] != "accept" && (m["milter_msg_id"] == "" || m["milter_msg_id"] == nil) {
				t.Errorf("no milter message id in the trial's answer: %v", m)
			}
		})
	}
	if t.Failed() {
		d.mu.Lock()
		t.Logf("daemon log:\n%s", d.log)
		d.mu.Unlock()
		return
	}

	// Nothing was charged: no store call, no counter, no strike, no lock.
	if n := d.metric(t, "abusemilter_store_calls_total"); n != 0 {
		t.Errorf("abusemilter_store_calls_total = %v after the trials, want 0", n)
	}
	if n := d.metric(t, "abusemilter_trials_total"); n != float64(trials) {
		t.Errorf("abusemilter_trials_total = %v, want %d", n, trials)
	}
	if n := d.metric(t, "abusemilter_decisions_total"); n != 0 {
		t.Errorf("abusemilter_decisions_total = %v after trials only, want 0", n)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	store, err := daemon.RedisStore(cfg, ratelimit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	used := func(acct string) (int64, int) {
		st, err := store.Status(context.Background(), ratelimit.Account(acct))
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, l := range st.Limits {
			n += l.Used
		}
		if st.Lock != nil {
			t.Errorf("account %s locked by trials: %+v", acct, st.Lock)
		}
		return n, st.Strikes
	}
	for acct := range accounts {
		if n, strikes := used(acct); n != 0 || strikes != 0 {
			t.Errorf("account %s after the trials: %d counted, %d strikes; want none", acct, n, strikes)
		}
	}

	// The trial macro on the main listener is refused, before anything.
	ok := filepath.Join(goldenDir, "apple-mail-utf8.eml")
	wrong := execute(t, scanInputs, "--milter", milterAddr(d.listen), "--login", "alice", ok)
	if wrong.code != exitUsage || !strings.Contains(wrong.stderr, "trial listener") {
		t.Errorf("a trial on the main listener: exit %d, stderr %q; want 2 and a refusal naming the trial listener", wrong.code, wrong.stderr)
	}
	// The measurement sees a charge: real mail (--charge) moves alice's counter.
	real := execute(t, scanInputs, "--milter", milterAddr(d.listen), "--charge", "--login", "alice", ok)
	if real.code != exitOK || !strings.Contains(real.stdout, "real mail: counted") {
		t.Fatalf("--charge: exit %d, stdout %q, stderr %q", real.code, real.stdout, real.stderr)
	}
	if n, _ := used("alice"); n == 0 {
		t.Errorf("a message sent with --charge did not move alice's counters")
	}
	if n := d.metric(t, "abusemilter_store_calls_total"); n != 1 {
		t.Errorf("abusemilter_store_calls_total = %v after one charged message, want 1", n)
	}
}

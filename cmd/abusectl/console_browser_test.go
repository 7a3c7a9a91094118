package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/abusemilter/abusemilter/internal/testutil/redistest"
	"github.com/abusemilter/abusemilter/ratelimit"
)

// The browser test: the built daemon and the built abusectl on a real
// redis-server, real milter traffic, and headless Chromium driven with
// chromedp, as a desk operator would use the console.

var (
	browserBuildOnce sync.Once
	browserBinDir    string
	browserBuildErr  error
)

// builtCommands builds abusemilter and abusectl once per test run.
func builtCommands(t *testing.T) (daemon, ctl string) {
	t.Helper()
	browserBuildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "abusectl-browser")
		if err != nil {
			browserBuildErr = err
			return
		}
		browserBinDir = dir
		for _, c := range []struct{ out, pkg string }{{"abusemilter", "../abusemilter"}, {"abusectl", "."}} {
			if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, c.out), c.pkg).CombinedOutput(); err != nil {
				browserBuildErr = fmt.Errorf("go build %s: %v\n%s", c.pkg, err, out)
				return
			}
		}
	})
	if browserBuildErr != nil {
		t.Fatal(browserBuildErr)
	}
	t.Cleanup(func() {}) // the directory goes with the process (TestMain-free package)
	return filepath.Join(browserBinDir, "abusemilter"), filepath.Join(browserBinDir, "abusectl")
}

// browserConfig is the daemon's config, with the console section that
// abusectl serve reads.
const browserConfig = `
listen: inet:127.0.0.1:0
metrics:
  listen: ""
dns:
  enabled: false
identity:
  login_is_address: false
  accounts:
    alice:
      logins: [alice]
      send_as: [example.com]
    bob:
      logins: [bob]
      send_as: [bob.example]
limits:
  max_recipients_per_message: 10
  account_messages: ["3/1h"]
  account_recipients: ["20/1h"]
strikes:
  threshold: 2
  window: 1h
  lock_action: hold
redis:
  url: redis://%s
  key_prefix: "t:"
  timeout: 2s
console:
  listen: 127.0.0.1:0
  users_file: %s
  refresh: 2s
desk:
  release_command: [%[3]s, "{action}", "{queue_id}", "{by}"]
  purge_command: [%[3]s, "{action}", "{queue_id}", "{by}"]
  deliver_command: []
`

// deskScript stands in for postsuper on the daemon's host (there is no
// Postfix in the browser test): it appends what it was asked to its log
// file, so that the test sees the daemon ran it.
const deskScript = `#!/bin/sh
echo "$*" >> "$0.log"
echo "done: $1 $2"
`

// startProcess starts a built command and returns its stdout lines and
// stderr as they come.
type process struct {
	cmd    *exec.Cmd
	lines  chan string
	mu     sync.Mutex
	stderr strings.Builder
}

func startProcess(t *testing.T, bin string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(bin, args...), lines: make(chan string, 100)}
	p.cmd.Env = append(os.Environ(), "ABUSEMILTER_CONFIG=", "NO_COLOR=1")
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.stderr.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	})
	return p
}

func (p *process) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// waitStderr waits for a line of stderr that contains all of want.
func (p *process) waitStderr(t *testing.T, want ...string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(p.log(), "\n") {
			ok := line != ""
			for _, w := range want {
				ok = ok && strings.Contains(line, w)
			}
			if ok {
				return line
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no line with %q on stderr:\n%s", want, p.log())
	return ""
}

// artifactsDir is where the browser test saves its screenshots:
// $ABUSEMILTER_ARTIFACTS (set by .ci/run), else a temporary directory.
func artifactsDir(t *testing.T) string {
	dir := os.Getenv("ABUSEMILTER_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// chromiumPath finds headless Chromium (Debian's chromium package): the
// binary itself rather than the wrapper script.
func chromiumPath(t *testing.T) string {
	wrapper := redistest.Binary(t, "chromium")
	if _, err := os.Stat("/usr/lib/chromium/chromium"); err == nil {
		return "/usr/lib/chromium/chromium"
	}
	return wrapper
}

// desk is the browser test's world: the store, the daemon, the console
// and a browser.
type desk struct {
	t        *testing.T
	env      *env
	milter   *fixture // its send drives the daemon over the milter protocol
	url      string
	ctx      context.Context
	shots    string
	password string
	deskLog  string // what the daemon's desk command was asked
	daemon   *process
}

func startDesk(t *testing.T) *desk {
	t.Helper()
	chromium := chromiumPath(t)
	daemonBin, ctlBin := builtCommands(t)
	rs := redistest.Start(t)
	dir := t.TempDir()
	users := filepath.Join(dir, "console-users")
	script := filepath.Join(dir, "desk-command")
	if err := os.WriteFile(script, []byte(deskScript), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, browserConfig, rs.Addr(), users, script)

	d := &desk{t: t, shots: artifactsDir(t), password: "desk-operator-password", deskLog: script + ".log"}
	d.env = connectEnv(t, globalOptions{ConfigPath: cfg, Timeout: 5 * time.Second})

	// The daemon.
	daemon := startProcess(t, daemonBin, "--config", cfg, "--log-format", "json")
	d.daemon = daemon
	ready := daemon.waitStderr(t, `"abusemilter ready"`)
	var rl struct{ Listen string }
	if err := json.Unmarshal([]byte(ready), &rl); err != nil || !strings.HasPrefix(rl.Listen, "tcp:") {
		t.Fatalf("ready line %q: %v", ready, err)
	}
	d.milter = &fixture{milterAddr: strings.TrimPrefix(rl.Listen, "tcp:")}

	// A console user, through the built abusectl.
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte(d.password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(ctlBin, "--config", cfg, "user", "add", "desk", "--role", "operator", "--password-file", pwFile).CombinedOutput(); err != nil {
		t.Fatalf("abusectl user add: %v\n%s", err, out)
	}

	// The console.
	console := startProcess(t, ctlBin, "--config", cfg, "serve", "--log-format", "json")
	select {
	case line, ok := <-console.lines:
		if !ok {
			t.Fatalf("abusectl serve exited:\n%s", console.log())
		}
		i := strings.Index(line, "http://")
		if i < 0 {
			t.Fatalf("abusectl serve said %q", line)
		}
		d.url = strings.TrimRight(strings.Fields(line[i:])[0], "/")
	case <-time.After(20 * time.Second):
		t.Fatalf("abusectl serve did not start:\n%s", console.log())
	}

	// The browser: headless Chromium with a fresh profile, no network but
	// the console.
	profile := filepath.Join(dir, "chromium-profile")
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc()
	})
	// Start the browser with no deadline on the first call (a deadline
	// would stop the browser).
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	// Accept the confirmation dialogs the console's script shows.
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for _, err := range dialogs {
			if err != nil {
				return
			}
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	d.ctx = ctx
	return d
}

// do runs browser steps with a deadline.
func (d *desk) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(d.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		d.t.Fatalf("%s: %v", what, err)
	}
}

// text returns the text of the first element matching a CSS selector.
func (d *desk) text(sel string) string {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(d.ctx, 30*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		d.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

func (d *desk) eval(js string) string {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(d.ctx, 30*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
	if err != nil {
		d.t.Fatalf("evaluate %s: %v", js, err)
	}
	return s
}

// submitAndWait clicks a submit button and waits for the page it leads to.
func (d *desk) clickAndLoad(what, sel string) {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(d.ctx, 30*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.Click(chromedp.CSS(sel)))); err != nil {
		d.t.Fatalf("%s: %v", what, err)
	}
}

// screenshot saves a full-page PNG of what the browser shows.
func (d *desk) screenshot(name string) {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(d.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		d.t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(d.shots, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		d.t.Fatal(err)
	}
	d.t.Logf("screenshot: %s", path)
}

func (d *desk) status(account string) ratelimit.Status {
	d.t.Helper()
	st, err := d.env.admin.Status(context.Background(), ratelimit.Account(account))
	if err != nil {
		d.t.Fatal(err)
	}
	return st
}

// TestConsoleInBrowser: real milter traffic locks alice; in Chromium the
// desk logs in, sees the lock on the overview, finds alice, sees her lock
// and usage, and unlocks her; each result is checked in the store. With
// scripts off the desk locks her again by the form alone.
//
// Between the account page and the unlock, the message the daemon held
// after the lock is released from the held queue page: the daemon runs
// its desk command, and the store records the outcome and who asked.
func TestConsoleInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("the browser test starts Chromium")
	}
	d := startDesk(t)

	// Real milter traffic: one message (1 of 3 an hour), then two forged
	// From headers: two strikes lock alice.
	mustAccept(t, "first message", d.milter.send(t, "alice", "alice@example.com", 1))
	mustRefuse(t, "forged 1", d.milter.send(t, "alice", "ceo@bank.example", 1), 550, "FROM_DOMAIN_NOT_OWNED")
	mustRefuse(t, "forged 2", d.milter.send(t, "alice", "ceo@bank.example", 1), 550, "FROM_DOMAIN_NOT_OWNED")
	if st := d.status("alice"); st.Lock == nil || st.Lock.By != "auto" {
		t.Fatalf("alice is not locked by strikes: %+v", st.Lock)
	}
	// Locked, alice's next message is held (strikes.lock_action hold).
	mustAccept(t, "held", d.milter.send(t, "alice", "alice@example.com", 1))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the daemon's log:\n%s", d.daemon.log())
		}
	})
	if held, err := d.env.admin.Held(context.Background(), "alice"); err != nil || len(held) != 1 || held[0].Status != ratelimit.StatusHeld {
		t.Fatalf("alice's message after the lock is not held: %+v %v", held, err)
	}

	for _, step := range []struct {
		name string
		run  func(*desk)
	}{
		{"login", browserLogin},
		{"overview", browserOverview},
		{"find the account", browserFindAccount},
		{"account page", browserAccountPage},
		{"held queue", browserHeldQueue},
		{"unlock", browserUnlock},
		{"audit log", browserAuditLog},
		{"scripts off", browserScriptsOff},
	} {
		t.Logf("step: %s", step.name)
		step.run(d)
		if t.Failed() {
			d.screenshot("failed-" + strings.ReplaceAll(step.name, " ", "-"))
			t.FailNow()
		}
	}
}

func browserLogin(d *desk) {
	t := d.t
	d.do("open the console", chromedp.Navigate(d.url+"/"), chromedp.WaitVisible(chromedp.ID("user")))
	loc := d.eval(`location.pathname + location.search`)
	if !strings.HasPrefix(loc, "/login") {
		t.Fatalf("anonymous: at %s, want the login page", loc)
	}
	d.do("fill in the login form",
		chromedp.SendKeys(chromedp.ID("user"), "desk"),
		chromedp.SendKeys(chromedp.ID("password"), d.password))
	d.clickAndLoad("log in", `section.login button[type=submit]`)
	if h := d.text("h1"); h != "Overview" {
		t.Fatalf("after login: %q, want the overview: %s", h, d.text("main"))
	}
	// The session cookie is not readable by scripts (HttpOnly).
	if c := d.eval(`document.cookie`); strings.Contains(c, "abusedesk") {
		t.Errorf("document.cookie shows the session: %q", c)
	}
}

func browserOverview(d *desk) {
	t := d.t
	locked := d.text("#locked")
	if !strings.Contains(locked, "alice") || !strings.Contains(locked, "auto") {
		t.Errorf("the overview's locked accounts: %q", locked)
	}
	if cards := strings.Join(strings.Fields(d.text(".cards")), " "); !strings.Contains(cards, "1 locked") {
		t.Errorf("cards: %q", cards)
	}
	// The refusals per hour by clause, from the store's index of recent
	// decisions: the two forged messages and the one held.
	if refusals := d.text("#refusals figcaption"); !strings.Contains(refusals, "impersonation (2)") || !strings.Contains(refusals, "policy (1)") {
		t.Errorf("the overview's refusal chart: %q, want impersonation (2) and policy (1)", refusals)
	}
	// The script refreshes the overview in place (CSP allows it: it is
	// the console's own file).
	d.do("wait for a refresh", chromedp.WaitReady(chromedp.CSS("#live[data-refreshed]")))
	d.screenshot("console-overview")
}

func browserFindAccount(d *desk) {
	t := d.t
	d.do("search", chromedp.SendKeys(chromedp.ID("q"), "alice"))
	d.clickAndLoad("search", `form.search button[type=submit]`)
	if res := d.text(".results"); !strings.Contains(res, "acct:alice") || !strings.Contains(res, "locked") {
		t.Fatalf("search results: %q", res)
	}
	d.clickAndLoad("open the account", `.results a`)
}

func browserAccountPage(d *desk) {
	t := d.t
	if h := d.text("h1"); !strings.Contains(h, "alice") || !strings.Contains(h, "locked") {
		t.Errorf("account heading: %q", h)
	}
	lock := d.text("#lock")
	for _, want := range []string{"Locked by auto", "Reason:", "Strikes: 2"} {
		if !strings.Contains(lock, want) {
			t.Errorf("the lock section lacks %q: %q", want, lock)
		}
	}
	limits := d.text("#limits")
	if !strings.Contains(limits, "ACCOUNT_MSG_RATE") || !strings.Contains(limits, "1/3 (33%)") {
		t.Errorf("the usage of alice: %q", limits)
	}
	// The 24-hour sending chart: the message accepted is a bar of this
	// hour, drawn from the store's per-hour history.
	if n := d.eval(`String(document.querySelectorAll("#sending figure svg[role=img] rect").length)`); n != "1" {
		t.Errorf("the sending chart has %s bars, want 1: %q", n, d.text("#sending"))
	}
	if bar := d.eval(`document.querySelector("#sending figure svg[role=img] rect title").textContent`); !strings.HasSuffix(bar, "UTC: messages 1") {
		t.Errorf("the sending chart's bar: %q, want this hour's 1 message", bar)
	}
	// The recent refusals: the two forged messages with their rule and
	// reply, and the message held after the lock.
	refusals := d.text("#refusals")
	for _, want := range []string{"reject", "FROM_DOMAIN_NOT_OWNED", "hold", "ACCOUNT_LOCKED", "example.com>"} {
		if !strings.Contains(refusals, want) {
			t.Errorf("the recent refusals lack %q: %q", want, refusals)
		}
	}
	if n := d.eval(`String(document.querySelectorAll("#refusals tbody tr").length)`); n != "3" {
		t.Errorf("%s recent refusals, want 3 (two rejected, one held): %q", n, refusals)
	}
	d.screenshot("console-account")
	// The same page on a phone.
	d.do("phone viewport", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)))
	if w := d.eval(`String(document.documentElement.scrollWidth)`); w != "390" {
		t.Errorf("on a phone the page is %spx wide, want 390 (no sideways scrolling)", w)
	}
	d.screenshot("console-account-phone")
	d.do("desktop viewport", chromedp.EmulateViewport(1280, 900))
}

// browserHeldQueue releases alice's held message from the held queue:
// tick it, "Release selected…", confirm; the daemon runs its release
// command and the console shows the outcome, which the store keeps with
// the console user's name.
func browserHeldQueue(d *desk) {
	t := d.t
	ctx := context.Background()
	held, err := d.env.admin.Held(ctx, "alice")
	if err != nil || len(held) != 1 {
		t.Fatalf("held: %+v %v", held, err)
	}
	qid := held[0].QueueID
	d.do("open the held queue", chromedp.Navigate(d.url+"/held"), chromedp.WaitVisible(chromedp.CSS("#heldform")))
	if list := d.text("#heldform"); !strings.Contains(list, "alice") || !strings.Contains(list, "hello") || !strings.Contains(list, qid) ||
		!strings.Contains(list, "ACCOUNT_LOCKED: 2 strikes within 1h") {
		t.Fatalf("the held queue: %q", list)
	}
	d.do("tick the message", chromedp.Click(chromedp.CSS(`input[name=id][value="`+qid+`"]`)))
	d.screenshot("console-held")
	d.clickAndLoad("release selected", `button[formaction="/held/release"]`)
	if p := d.text("main"); !strings.Contains(p, qid) || !strings.Contains(p, "Release delivers") {
		t.Fatalf("the confirmation page: %q", p)
	}
	if rec, _, _ := d.env.admin.DecisionRecord(ctx, qid); rec.Status != ratelimit.StatusHeld {
		t.Fatalf("released before confirmation: %q", rec.Status)
	}
	d.clickAndLoad("confirm", "#confirm")
	if o := d.text(".outcomes"); !strings.Contains(o, qid) || !strings.Contains(o, "released") {
		t.Errorf("the outcome shown: %q", o)
	}
	rec, ok, err := d.env.admin.DecisionRecord(ctx, qid)
	if err != nil || !ok || rec.Status != ratelimit.StatusReleased || rec.StatusBy != "desk (console)" {
		t.Fatalf("the store's record after the release: %+v %v %v", rec, ok, err)
	}
	ran, err := os.ReadFile(d.deskLog)
	if err != nil || strings.TrimSpace(string(ran)) != "release "+qid+" desk (console)" {
		t.Errorf("the daemon's release command ran with %q (%v)", ran, err)
	}
	var audited []string
	for _, a := range d.status("alice").Audit {
		if a.By == "desk (console)" {
			audited = append(audited, a.Action)
		}
	}
	if j := strings.Join(audited, " "); !strings.Contains(j, "release-request") || !strings.Contains(j, "release") {
		t.Errorf("the audit log by the console user: %v", audited)
	}
	// Nothing is held now; back to the account page for the unlock.
	if p := d.text("main"); strings.Contains(p, "Release selected") {
		t.Errorf("the page after the release still offers to release: %q", p)
	}
	d.do("back to alice", chromedp.Navigate(d.url+"/account?s=acct%3Aalice"), chromedp.WaitVisible(chromedp.CSS("#lock")))
}

func browserUnlock(d *desk) {
	t := d.t
	d.clickAndLoad("unlock", "#unlock")
	if f := d.text(".flash"); !strings.Contains(f, "Unlocked alice") {
		t.Errorf("after unlock: %q", f)
	}
	st := d.status("alice")
	if st.Lock != nil || st.Strikes != 0 {
		t.Fatalf("the store still has alice locked: %+v, %d strikes", st.Lock, st.Strikes)
	}
	if len(st.Audit) == 0 || st.Audit[0].Action != "unlock" || st.Audit[0].By != "desk (console)" {
		t.Errorf("the audit log does not name the console user: %+v", st.Audit)
	}
	if p := d.text("#lock"); !strings.Contains(p, "Not locked") {
		t.Errorf("the account page after unlock: %q", p)
	}
	// The daemon lets alice's mail through again.
	mustAccept(t, "after the unlock", d.milter.send(t, "alice", "alice@example.com", 1))
	if st := d.status("alice"); st.Limits[0].Used != 2 {
		t.Errorf("after one more message alice has used %d", st.Limits[0].Used)
	}
}

// browserAuditLog opens the audit page: the log of every subject lists
// the console user's unlock and release, newest first, after the
// daemon's outcome of the release.
func browserAuditLog(d *desk) {
	t := d.t
	d.do("open the audit log", chromedp.Navigate(d.url+"/audit"), chromedp.WaitVisible(chromedp.CSS("main table")))
	var rows []string
	for _, r := range strings.Split(d.eval(`Array.from(document.querySelectorAll("main tbody tr")).map(r => Array.from(r.cells).slice(1, 4).map(c => c.textContent).join(" ")).join("\n")`), "\n") {
		rows = append(rows, r)
	}
	want := []string{"desk (console) unlock acct:alice", "desk (console) release acct:alice", "desk (console) release-request acct:alice"}
	if len(rows) < len(want) || strings.Join(rows[:len(want)], "|") != strings.Join(want, "|") {
		t.Errorf("the audit log, newest first: %q, want it to start with %q", rows, want)
	}
	d.screenshot("console-audit")
	d.do("back to alice", chromedp.Navigate(d.url+"/account?s=acct%3Aalice"), chromedp.WaitVisible(chromedp.CSS("#lock")))
}

// browserScriptsOff locks alice with scripts disabled: forms and pages
// work without the script.
func browserScriptsOff(d *desk) {
	t := d.t
	if _, err := chromedp.Call(d.ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
		t.Fatal(err)
	}
	d.do("reload", chromedp.Navigate(d.url+"/account?s=acct%3Aalice"), chromedp.WaitVisible(chromedp.CSS("#lock")))
	if js := d.eval(`"x"`); js != "x" {
		t.Fatalf("evaluation fails with scripts off: %q", js)
	}
	d.do("open the lock form", chromedp.Click(chromedp.CSS("#lock summary")))
	d.do("fill in the lock form",
		chromedp.SendKeys(chromedp.ID("lock-reason"), "phishing <b>campaign</b>, ticket 4711"),
		chromedp.SendKeys(chromedp.ID("lock-for"), "2h"))
	d.clickAndLoad("lock", `#lock form button[type=submit]`)
	st := d.status("alice")
	if st.Lock == nil || st.Lock.By != "desk (console)" || st.Lock.Reason != "phishing <b>campaign</b>, ticket 4711" || st.Lock.Until.IsZero() {
		t.Fatalf("lock with scripts off: %+v", st.Lock)
	}
	if p := d.text("#lock"); !strings.Contains(p, "phishing <b>campaign</b>, ticket 4711") {
		t.Errorf("the reason is not shown as text: %q", p)
	}
	// Locked again, alice's next message is held again (lock_action hold).
	mustAccept(t, "locked again", d.milter.send(t, "alice", "alice@example.com", 1))
	if held, err := d.env.admin.Held(context.Background(), "alice"); err != nil || len(held) == 0 || held[0].Status != ratelimit.StatusHeld || held[0].Rule != ratelimit.RuleAccountLocked {
		t.Errorf("alice's message after the console's lock is not held: %+v %v", held, err)
	}
	// The console's pages answer without the browser too (and never with
	// data to an anonymous client).
	resp, err := http.Get(d.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `action="/login"`) || strings.Contains(string(body), "alice") {
		t.Errorf("anonymous GET / is not the login page")
	}
}

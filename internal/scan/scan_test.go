package scan

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/config"
	"github.com/abusemilter/abusemilter/internal/mailbox"
	"github.com/abusemilter/abusemilter/scoring"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const mailboxes = "../../testdata/mailboxes"

func mb(name string) string { return filepath.Join(mailboxes, name) }

// options are a test scan's: the scan's options and the config file.
type options struct {
	Options
	ConfigPath string // "": the built-in defaults
}

// scanOpts returns options for a test scan with the test config.
func scanOpts(inputs ...string) options {
	return options{ConfigPath: mb("abusescan.yaml"), Options: Options{
		Format: "json", FailOn: "reject", Jobs: 2, Now: "2026-11-20T12:00:00Z", Inputs: inputs,
	}}
}

// How a scan ended, as abusescan turns it into its exit status (0, 1, 2):
// nothing at or above FailOn, something at or above it, an error.
const (
	exitOK = iota
	exitFound
	exitUsage
)

type result struct {
	code     int
	stdout   string
	stderr   string // warnings, the CSV summary, the error
	messages []jsonMessage
	summary  jsonSummary
}

// scanOnly runs a scan with the test's config; warnings and the error go
// to stderr as abusescan writes them.
func scanOnly(t *testing.T, o options) result {
	t.Helper()
	var out, errb bytes.Buffer
	cfg := config.Default()
	if o.ConfigPath != "" {
		var err error
		if cfg, err = config.Load(o.ConfigPath); err != nil {
			t.Fatal(err)
		}
	}
	o.Warn = func(p *mailbox.Problem) { fmt.Fprintf(&errb, "abusescan: warning: %v\n", p) }
	var res Result
	s, err := New(cfg, o.Options)
	if err == nil {
		res, err = s.Run(context.Background(), &out, &errb)
	}
	r := result{stdout: out.String()}
	switch {
	case err != nil:
		fmt.Fprintf(&errb, "abusescan: %v\n", err)
		r.code = exitUsage
	case res.Failing > 0:
		r.code = exitFound
	}
	r.stderr = errb.String()
	return r
}

func runScan(t *testing.T, o options) result {
	t.Helper()
	r := scanOnly(t, o)
	if o.Format != "json" {
		return r
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	for i, l := range lines {
		if l == "" {
			continue
		}
		if i == len(lines)-1 {
			if err := json.Unmarshal([]byte(l), &r.summary); err != nil || !r.summary.Summary {
				t.Fatalf("last line is not a summary: %v: %s", err, l)
			}
			continue
		}
		var m jsonMessage
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %d: %v: %s", i+1, err, l)
		}
		r.messages = append(r.messages, m)
	}
	return r
}

// verdicts lists "where verdict RULES" for each message.
func verdicts(ms []jsonMessage) []string {
	var out []string
	for _, m := range ms {
		where := filepath.Base(m.File)
		if m.Format == "mbox" {
			where = fmt.Sprintf("%s:%d", where, m.Offset)
		}
		out = append(out, strings.TrimSpace(where+" "+m.Verdict+" "+strings.Join(m.Rules, ",")))
	}
	return out
}

// tempFile writes data to a file of that name in a fresh temporary
// directory and returns its path.
func tempFile(t *testing.T, name, data string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func check(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s:\ngot:\n  %s\nwant:\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func counts(t *testing.T, r result, messages, accepted, deferred, rejected, unreadable int) {
	t.Helper()
	s := r.summary
	if s.Messages != messages || s.Accepted != accepted || s.Deferred != deferred || s.Rejected != rejected || s.Unreadable != unreadable {
		t.Errorf("summary %d messages %d/%d/%d accepted/deferred/rejected, %d unreadable; want %d %d/%d/%d, %d\nstderr: %s",
			s.Messages, s.Accepted, s.Deferred, s.Rejected, s.Unreadable, messages, accepted, deferred, rejected, unreadable, r.stderr)
	}
}

const forged = "FROM_DOMAIN_NOT_OWNED"

func TestMboxVariantsAndGzip(t *testing.T) {
	for _, tc := range []struct {
		file, variant string
		last          int // the mboxrd escape of ">From " is one byte longer
	}{
		{"sent.mbox", "mboxo", 726}, {"sent.mboxrd", "mboxrd", 727}, {"sent.mbox.gz", "", 726},
	} {
		t.Run(tc.file, func(t *testing.T) {
			o := scanOpts(mb(tc.file))
			o.Account, o.MboxVariant = "alice", tc.variant
			r := runScan(t, o)
			if r.code != exitFound {
				t.Errorf("exit %d, want %d (a rejected message)", r.code, exitFound)
			}
			check(t, "verdicts", verdicts(r.messages), []string{
				tc.file + ":0 accept", tc.file + ":207 reject " + forged, tc.file + ":463 accept", fmt.Sprintf("%s:%d accept", tc.file, tc.last),
			})
			counts(t, r, 4, 3, 0, 1, 0)
			if m := r.messages[1]; m.Reply != "550 5.7.1 Rejected under the e-mail abuse policy (impersonation: FROM_DOMAIN_NOT_OWNED)" ||
				m.From != "service@paypal.com" || strings.Join(m.Recipients, ",") != "victim@example.net,other@example.net" || m.Account != "alice" {
				t.Errorf("forged message: %+v", m)
			}
		})
	}
}

func TestMaildirAndSenderAccounts(t *testing.T) {
	// Without --account, the account comes from the sender: alice's mail
	// is alice's; the forged PayPal address belongs to no account and the
	// engine treats it as a login equal to that address (login_is_address).
	r := runScan(t, scanOpts(mb("maildir")))
	check(t, "verdicts", verdicts(r.messages), []string{
		"1700000001.M1P1.host:2,S accept", "1700000002.M2P1.host:2,S accept", "1700000003.M3P1.host accept",
	})
	if got := []string{r.messages[0].Account, r.messages[1].Account, r.messages[2].Account}; strings.Join(got, " ") != "alice service@paypal.com alice" {
		t.Errorf("accounts = %q", got)
	}
	counts(t, r, 3, 3, 0, 0, 0)
	if r.code != exitOK {
		t.Errorf("exit %d, want 0", r.code)
	}
	o := scanOpts(mb("maildir"))
	o.Account = "alice"
	r = runScan(t, o)
	check(t, "verdicts as alice", verdicts(r.messages), []string{
		"1700000001.M1P1.host:2,S accept", "1700000002.M2P1.host:2,S reject " + forged, "1700000003.M3P1.host accept",
	})
}

func TestTruncatedMbox(t *testing.T) {
	o := scanOpts(mb("truncated.mbox"))
	o.Account = "alice"
	r := runScan(t, o)
	check(t, "verdicts", verdicts(r.messages), []string{"truncated.mbox:0 accept", "truncated.mbox:207 accept"})
	counts(t, r, 2, 2, 0, 0, 0)
	if r.summary.Problems["truncated"] != 1 || !r.messages[1].Truncated || r.messages[0].Truncated {
		t.Errorf("truncation not reported: %+v", r.summary.Problems)
	}
	if !strings.Contains(r.stderr, "truncated.mbox: offset 207: truncated") {
		t.Errorf("stderr lacks the warning with file and offset: %s", r.stderr)
	}
	if r.code != exitOK {
		t.Errorf("exit %d, want 0", r.code)
	}
}

func TestMixedDirectory(t *testing.T) {
	o := scanOpts(mb("mixed"))
	o.Account, o.Jobs = "alice", 3
	r := runScan(t, o)
	check(t, "verdicts", verdicts(r.messages), []string{
		"a-message.eml accept",
		"e-forged.msg reject " + forged,
		"1700000008.M8P9.host:2,S accept",
		"1700000009.M9P9.host reject " + forged,
		"f-archive:0 accept",
		"f-archive:207 accept",
	})
	counts(t, r, 6, 4, 0, 2, 3)
	for _, want := range []string{"b-empty: empty", "c-binary.png: binary", "d-notes.txt: no-headers"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q: %s", want, r.stderr)
		}
	}
}

func TestStdin(t *testing.T) {
	data, err := os.ReadFile(mb("sent.mbox.gz"))
	if err != nil {
		t.Fatal(err)
	}
	o := scanOpts("-")
	o.Account, o.Stdin = "alice", bytes.NewReader(data)
	r := runScan(t, o)
	check(t, "verdicts", verdicts(r.messages), []string{"-:0 accept", "-:207 reject " + forged, "-:463 accept", "-:726 accept"})
	counts(t, r, 4, 3, 0, 1, 0)
}

func TestReplayRates(t *testing.T) {
	o := scanOpts(mb("burst.mbox"))
	o.Account, o.ReplayRates, o.FailOn = "alice", true, "defer"
	r := runScan(t, o)
	// 3/1h: by Date the 4th and 5th message (b4 10:03, b5 10:04) are
	// deferred although they come first and fifth in the file.
	// A refusal by a limit is a strike: b4 and b5 are two (threshold 2), so
	// b5 locks alice and the 12:00 message is deferred.
	last := "burst.mbox:1310 defer ACCOUNT_LOCKED"
	check(t, "verdicts", verdicts(r.messages), []string{
		"burst.mbox:0 defer ACCOUNT_MSG_RATE",
		"burst.mbox:183 accept",
		"burst.mbox:365 accept",
		"burst.mbox:549 accept",
		"burst.mbox:731 defer ACCOUNT_MSG_RATE",
		"burst.mbox:914 reject " + forged,
		"burst.mbox:1112 reject " + forged,
		last,
	})
	if r.code != exitFound {
		t.Errorf("exit %d, want 1", r.code)
	}
	if m := r.messages[0]; m.Replay == nil || m.Replay.Verdict != "defer" || m.Replay.Rule != "ACCOUNT_MSG_RATE" || m.Replay.RetryAfter != 57*60 {
		t.Errorf("replay of b5: %+v (want retry after 57m: b1 at 10:00 is in the bucket 10:00-10:01 of the 1h counter, which leaves the window at 11:01)", m.Replay)
	}
	if len(r.summary.Locks) != 1 || r.summary.Locks[0].Account != "alice" || r.summary.Locks[0].At != "2026-11-20T10:04:00Z" || !strings.HasSuffix(r.summary.Locks[0].Where, "burst.mbox:0") {
		t.Errorf("locks = %+v", r.summary.Locks)
	}
	// Without replay the rules alone decide.
	o.ReplayRates = false
	r = runScan(t, o)
	counts(t, r, 8, 6, 0, 2, 0)
}

// probeRule records what the engine saw: its clock and the header names.
func probeRule() scoring.Rule {
	return scoring.Rule{ID: "PROBE", Clause: scoring.ForgedHeaders, Score: 0, Check: func(c *scoring.Check) (string, bool) {
		var names []string
		for _, h := range c.Msg.Headers {
			names = append(names, h.Name)
		}
		return c.Now.UTC().Format(time.RFC3339) + " " + strings.Join(names, ","), true
	}}
}

func probe(t *testing.T, o options) []string {
	t.Helper()
	o.rules = []scoring.Rule{probeRule()}
	r := runScan(t, o)
	var out []string
	for _, m := range r.messages {
		if len(m.Findings) != 1 {
			t.Fatalf("%s: findings %+v", m.File, m.Findings)
		}
		out = append(out, m.Findings[0].Reason)
	}
	return out
}

func TestAsReceivedAndClock(t *testing.T) {
	o := scanOpts(mb("received.eml"))
	o.Account = "alice"
	check(t, "as stored", probe(t, o), []string{"2026-11-20T12:00:00Z Return-Path,Delivered-To,Received,X-Spam-Status,Authentication-Results,Received,From,To,Subject,Date,Message-ID"})
	o.AsReceived, o.Now = true, "received"
	check(t, "as received", probe(t, o), []string{"2026-11-20T11:00:05Z Received,From,To,Subject,Date,Message-ID"})

	// Each message is judged at its own Received time, whatever the worker.
	var mbox strings.Builder
	var want []string
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 200 {
		at := base.Add(time.Duration(i) * 7 * time.Minute)
		fmt.Fprintf(&mbox, "From a@example.com Thu Jan  1 00:00:00 2026\nReceived: from x by mx.example.net; %s\nFrom: a@example.com\n\nbody %d\n\n", at.Format(time.RFC1123Z), i)
		want = append(want, at.Format(time.RFC3339)+" From")
	}
	path := tempFile(t, "clock.mbox", mbox.String())
	o = scanOpts(path)
	o.AsReceived, o.Now, o.Jobs, o.AccountFromSender = true, "received", 4, true
	check(t, "per-message clock", probe(t, o), want)
}

func TestAccountFromSender(t *testing.T) {
	o := scanOpts(mb("sent.mbox"))
	o.AccountFromSender = true
	r := runScan(t, o)
	// alice's messages are alice's (the config's owner of example.com);
	// the PayPal one gets an account of its own, so the identity rule stays
	// quiet and only content rules could refuse it.
	check(t, "verdicts", verdicts(r.messages), []string{"sent.mbox:0 accept", "sent.mbox:207 accept", "sent.mbox:463 accept", "sent.mbox:726 accept"})
	if got := r.messages[1].Account; got != "sender:paypal.com" {
		t.Errorf("account of the PayPal message = %q", got)
	}
	if got := r.messages[0].Account; got != "alice" {
		t.Errorf("account of alice's message = %q", got)
	}
}

func TestExitCodesAndUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*options)
		code int
		msg  string
	}{
		{"fail-on never", func(o *options) { o.FailOn = "never" }, exitOK, ""},
		{"fail-on defer", func(o *options) { o.FailOn = "defer" }, exitFound, ""},
		{"bad format", func(o *options) { o.Format = "xml" }, exitUsage, `--format "xml"`},
		{"bad fail-on", func(o *options) { o.FailOn = "maybe" }, exitUsage, `--fail-on "maybe"`},
		{"bad now", func(o *options) { o.Now = "yesterday" }, exitUsage, `--now "yesterday"`},
		{"bad variant", func(o *options) { o.MboxVariant = "mboxcl" }, exitUsage, `mbox variant "mboxcl"`},
		{"missing input", func(o *options) { o.Inputs = []string{"/nonexistent/box"} }, exitUsage, `input "/nonexistent/box"`},
		{"unknown account", func(o *options) { o.Account = "mallory" }, exitUsage, `--account "mallory"`},
		{"both account modes", func(o *options) { o.Account, o.AccountFromSender = "alice", true }, exitUsage, "exclude each other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := scanOpts(mb("sent.mbox"))
			o.Account = "alice"
			tc.mod(&o)
			r := scanOnly(t, o)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.msg) {
				t.Errorf("exit %d, stderr %q; want exit %d mentioning %q", r.code, r.stderr, tc.code, tc.msg)
			}
		})
	}
	if r := scanOnly(t, options{}); r.code != exitUsage || !strings.Contains(r.stderr, "no input given") {
		t.Errorf("no input: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestOrderIndependentOfWorkers(t *testing.T) {
	var first string
	for _, j := range []int{1, 2, 7} {
		o := scanOpts(mb("mixed"), mb("burst.mbox"), mb("sent.mbox"), mb("maildir"))
		o.Account, o.Jobs = "alice", j
		r := runScan(t, o)
		if j == 1 {
			first = r.stdout
			continue
		}
		if r.stdout != first {
			t.Errorf("-j %d output differs from -j 1", j)
		}
	}
}

func TestTextReport(t *testing.T) {
	o := scanOpts(mb("mixed"))
	o.Account, o.Format = "alice", "text"
	r := runScan(t, o)
	lines := strings.Split(r.stdout, "\n")
	want := []string{
		mb("mixed/e-forged.msg") + "  2026-11-20T10:05:00Z  service@paypal.com  victim@example.net,other@example.net  reject  " + forged,
		mb("mixed/nested/deeper/Maildir/new/1700000009.M9P9.host") + "  2026-11-20T10:05:00Z  service@paypal.com  victim@example.net,other@example.net  reject  " + forged,
		"",
		"scanned 6 messages: 4 accepted, 0 deferred, 2 rejected",
	}
	check(t, "text", lines[:4], want)
	for _, s := range []string{"top rules:", forged + "  ", "top senders", "service@paypal.com", "unreadable inputs: 3"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("text summary lacks %q:\n%s", s, r.stdout)
		}
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		for i := 0; i < len(gl) || i < len(wl); i++ {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Fatalf("%s differs at line %d (go test -update rewrites it):\ngot:  %s\nwant: %s", path, i+1, g, w)
			}
		}
	}
}

func TestGoldenFormats(t *testing.T) {
	// The test config without strikes, so that the golden files do not
	// depend on whether the limiter locks accounts.
	cfg, err := os.ReadFile(mb("abusescan.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	noStrikes := tempFile(t, "config.yaml", strings.Replace(string(cfg), "threshold: 2", "threshold: 0", 1))
	for _, format := range []string{"json", "csv"} {
		o := scanOpts(mb("mixed"), mb("burst.mbox"))
		o.ConfigPath, o.Account, o.Format, o.ReplayRates = noStrikes, "alice", format, true
		r := runScan(t, o)
		if r.code != exitFound {
			t.Errorf("%s: exit %d, want 1", format, r.code)
		}
		golden(t, "golden."+format, r.stdout)
	}
}

func TestHeaderlessMessageInMbox(t *testing.T) {
	box := "From alice@example.com Fri Nov 20 10:00:00 2026\nFrom: alice@example.com\n\none\n\n" +
		"From alice@example.com Fri Nov 20 10:01:00 2026\nthis message has no header block\n\n" +
		"From alice@example.com Fri Nov 20 10:02:00 2026\nFrom: Bank <alerts@bank.example>\n\nthree\n\n"
	path := tempFile(t, "box", box)
	o := scanOpts(path)
	o.Account = "alice"
	r := runScan(t, o)
	second, third := strings.Index(box, "From alice@example.com Fri Nov 20 10:01"), strings.Index(box, "From alice@example.com Fri Nov 20 10:02")
	check(t, "verdicts", verdicts(r.messages), []string{"box:0 accept DATE_MISSING", fmt.Sprintf("box:%d reject %s,DATE_MISSING", third, forged)})
	counts(t, r, 2, 1, 0, 1, 1)
	if len(r.summary.Listed) != 1 || r.summary.Listed[0].Offset != int64(second) || r.summary.Listed[0].Kind != "no-headers" ||
		!strings.Contains(r.stderr, fmt.Sprintf("box: offset %d: no-headers", second)) {
		t.Errorf("problem list %+v, stderr %s", r.summary.Listed, r.stderr)
	}
}

// TestDNSOnlyWhenAsked: without --dns the engine gets no resolver, even
// when the config enables DNS; --dns builds the config's resolver. No scan
// runs with it, so no query is made.
func TestDNSOnlyWhenAsked(t *testing.T) {
	path := tempFile(t, "dns.yaml", "dns:\n  enabled: true\n")
	o := scanOpts(mb("sent.mbox"))
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, o.Options)
	if err != nil {
		t.Fatal(err)
	}
	if s.resolver != nil {
		t.Errorf("resolver %T without --dns", s.resolver)
	}
	o.DNS = true
	if s, err = New(cfg, o.Options); err != nil || s.resolver == nil {
		t.Errorf("--dns: resolver %v, err %v", s.resolver, err)
	}
}

// TestAsReceivedAccountFromSender: received mail from a domain no account
// owns is judged as scoring.AsReceived makes it up (the corpus test's
// account: From domain and Sender), named after the domain.
func TestAsReceivedAccountFromSender(t *testing.T) {
	msg := "Return-Path: <bounce@lists.example.org>\nReceived: from a by mx.example.net; Fri, 20 Nov 2026 11:00:05 +0000\n" +
		"From: Carol <carol@other.test>\nSender: agent@mailer.test\nTo: bob@example.net\nDate: Fri, 20 Nov 2026 11:00:00 +0000\n" +
		"Message-ID: <1@other.test>\nSubject: hi\n\nbody\n"
	path := tempFile(t, "carol.eml", msg)
	o := scanOpts(path)
	o.AccountFromSender, o.AsReceived, o.Now = true, true, "received"
	r := runScan(t, o)
	if len(r.messages) != 1 {
		t.Fatalf("messages %+v", r.messages)
	}
	m := r.messages[0]
	if m.Account != "sender:other.test" || m.Verdict != "accept" || m.EnvelopeFrom != "carol@other.test" {
		t.Errorf("got account %q verdict %s %v envelope from %q; want sender:other.test, accept, carol@other.test (From, not Return-Path)", m.Account, m.Verdict, m.Rules, m.EnvelopeFrom)
	}
}

// TestProgress: the callback gets the inputs' size first, then bytes read
// and messages scanned that only grow, ending at the whole input and every
// message; the calls never overlap.
func TestProgress(t *testing.T) {
	o := scanOpts(mb("mixed"), mb("sent.mbox"))
	o.Account, o.Jobs = "alice", 3
	fi, err := os.Stat(mb("sent.mbox"))
	if err != nil {
		t.Fatal(err)
	}
	var calls []Progress
	var busy bool
	o.Progress = func(p Progress) {
		if busy {
			t.Error("overlapping Progress calls")
		}
		busy = true
		calls = append(calls, p)
		busy = false
	}
	r := runScan(t, o)
	if len(calls) < 2 || calls[0].Read != 0 || calls[0].Messages != 0 || calls[0].Total < fi.Size() {
		t.Fatalf("calls %+v", calls)
	}
	for i := 1; i < len(calls); i++ {
		a, b := calls[i-1], calls[i]
		if b.Read < a.Read || b.Messages < a.Messages || b.Total != a.Total {
			t.Fatalf("call %d went back: %+v after %+v", i, b, a)
		}
	}
	last := calls[len(calls)-1]
	if last.Read != last.Total || last.Messages != int64(r.summary.Messages) || r.summary.Messages != 10 {
		t.Errorf("last call %+v, %d messages scanned", last, r.summary.Messages)
	}
	o.Inputs = []string{"-"}
	o.Stdin = strings.NewReader("From: a@example.com\n\nhi\n")
	calls = nil
	runScan(t, o)
	if len(calls) == 0 || calls[0].Total != -1 {
		t.Errorf("stdin: calls %+v, want Total -1", calls)
	}
}

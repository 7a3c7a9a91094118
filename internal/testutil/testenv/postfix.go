package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// PostfixOptions describe a Postfix instance for a test. The zero value
// gives a Postfix without milters that relays everything to RelayTo.
type PostfixOptions struct {
	// SMTPDMilter is the milter for mail received over SMTP, in Postfix
	// notation ("inet:127.0.0.1:7357", "unix:/path/sock"); "" for none.
	SMTPDMilter string
	// NonSMTPDMilter is the milter for mail submitted with the sendmail
	// command (pickup -> cleanup); "" for none.
	NonSMTPDMilter string
	// MilterDefaultAction is what Postfix does when the milter is
	// unreachable or misbehaves: "tempfail" (default here and in Postfix
	// 3.7), "accept", "reject" or "quarantine".
	MilterDefaultAction string
	// MilterConnectTimeout, MilterCommandTimeout and MilterContentTimeout
	// are the per-milter timeouts; zero means 5s, 5s and 10s (Postfix's
	// own defaults, 30s/30s/300s, are too long for tests).
	MilterConnectTimeout time.Duration
	MilterCommandTimeout time.Duration
	MilterContentTimeout time.Duration
	// MilterProtocol is milter_protocol; zero means 6 (Postfix negotiates
	// down to what the milter offers).
	MilterProtocol int
	// RelayTo is the "127.0.0.1:PORT" of the next hop (usually a Sink);
	// every non-local recipient is relayed there. Required.
	RelayTo string
	// MyNetworks is mynetworks; empty means 127.0.0.0/8 plus the three
	// documentation networks (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24)
	// so that XCLIENT ADDR from those ranges may relay without SASL.
	MyNetworks string
	// ExtraMainCF holds further main.cf settings (name -> value); they
	// override the harness's own. Use it e.g. for milter_*_macros.
	ExtraMainCF map[string]string
	// LocalDomain, when set, is delivered locally (mydestination) by
	// Postfix's local(8) through Aliases (name -> right-hand side as in
	// aliases(5), e.g. "|/usr/bin/abusectl complaint -"); a pipe command
	// runs as the nobody user (default_privs).
	LocalDomain string
	Aliases     map[string]string
}

// Postfix is a running Postfix instance with its own configuration
// directory, queue directory, data directory and log file.
type Postfix struct {
	// ConfigDir is the instance's config_directory (for postfix -c, sendmail -C).
	ConfigDir string
	// QueueDir is the instance's queue_directory.
	QueueDir string
	// LogFile is the instance's maillog_file.
	LogFile string

	port      int
	sendmail  string
	postfix   string
	postqueue string
}

// postfixTimeout bounds every postfix/sendmail command the harness runs.
const postfixTimeout = 30 * time.Second

// StartPostfix writes a configuration under a fresh temporary directory,
// starts Postfix with "postfix -c DIR start" and stops it (and removes the
// directory) when the test ends. It skips the test (or fails under
// ABUSEMILTER_REQUIRE_TOOLS=1) when Postfix is not installed or the test
// does not run as root.
func StartPostfix(t testing.TB, opts PostfixOptions) *Postfix {
	t.Helper()
	postfixCmd := RequireTool(t, "postfix")
	sendmailCmd := RequireTool(t, "sendmail")
	postqueueCmd := RequireTool(t, "postqueue")
	RequireRoot(t, "Postfix's master runs as root and switches to mail_owner")
	if _, err := user.Lookup("postfix"); err != nil {
		Unavailable(t, "test needs the postfix user (from the postfix package): %v", err)
	}
	if _, err := user.LookupGroup("postdrop"); err != nil {
		Unavailable(t, "test needs the postdrop group (from the postfix package): %v", err)
	}
	if opts.RelayTo == "" {
		t.Fatalf("start postfix: PostfixOptions.RelayTo is required")
	}

	// Our own temporary directory, not t.TempDir(): Postfix's unprivileged
	// processes need to traverse it (mode 0755), and it must be removed
	// only after every Postfix process has exited.
	base, err := os.MkdirTemp("", "testenv-postfix-")
	if err != nil {
		t.Fatalf("start postfix: %v", err)
	}
	p := &Postfix{
		ConfigDir: filepath.Join(base, "etc"),
		QueueDir:  filepath.Join(base, "spool"),
		LogFile:   filepath.Join(base, "log", "maillog"),
		port:      FreePort(t),
		sendmail:  sendmailCmd,
		postfix:   postfixCmd,
		postqueue: postqueueCmd,
	}
	dataDir := filepath.Join(base, "lib")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("postfix log (%s):\n%s", p.LogFile, p.Log())
		}
		p.stop(t)
		if err := os.RemoveAll(base); err != nil {
			t.Errorf("remove postfix directory: %v", err)
		}
	})
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatalf("start postfix: %v", err)
	}
	for _, dir := range []string{p.ConfigDir, p.QueueDir, dataDir, filepath.Dir(p.LogFile)} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatalf("start postfix: %v", err)
		}
	}
	// The queue and data directories with the owners and modes Postfix's
	// own installer gives them (postfix-files); then "quick-start" lets
	// "postfix start" skip postfix-script's integrity checks, which cost
	// seconds per instance (post-install alone runs postconf dozens of
	// times) and find nothing to fix in a directory made a moment ago.
	if err := makePostfixDirs(postfixMetaDir, p.QueueDir, dataDir); err != nil {
		t.Fatalf("start postfix: %v", err)
	}
	if err := os.WriteFile(filepath.Join(p.QueueDir, "quick-start"), nil, 0o644); err != nil {
		t.Fatalf("start postfix: %v", err)
	}
	if opts.LocalDomain != "" {
		var aliases strings.Builder
		for name, rhs := range opts.Aliases {
			fmt.Fprintf(&aliases, "%s %s\n", name, rhs) // texthash: postmap(1) format
		}
		path := filepath.Join(p.ConfigDir, "aliases")
		if err := os.WriteFile(path, []byte(aliases.String()), 0o644); err != nil {
			t.Fatalf("start postfix: %v", err)
		}
		extra := map[string]string{"mydestination": opts.LocalDomain, "alias_maps": "texthash:" + path,
			"local_transport": "local", "default_privs": "nobody"}
		for k, v := range opts.ExtraMainCF {
			extra[k] = v
		}
		opts.ExtraMainCF = extra
	}
	main := postfixMainCF(opts, p.QueueDir, dataDir, p.LogFile, base, p.port)
	if err := os.WriteFile(filepath.Join(p.ConfigDir, "main.cf"), []byte(main), 0o644); err != nil {
		t.Fatalf("start postfix: %v", err)
	}
	if err := os.WriteFile(filepath.Join(p.ConfigDir, "master.cf"), []byte(postfixMasterCF(p.port)), 0o644); err != nil {
		t.Fatalf("start postfix: %v", err)
	}
	// Postfix rereads a configuration file, pausing 300ms each time, until
	// its modification time is more than a second old (it may be being
	// edited); date the files back so that start-up does not wait.
	old := time.Now().Add(-time.Hour)
	for _, name := range []string{"main.cf", "master.cf"} {
		if err := os.Chtimes(filepath.Join(p.ConfigDir, name), old, old); err != nil {
			t.Fatalf("start postfix: %v", err)
		}
	}
	// "postfix start" starts master and waits until it is up (master -w).
	if out, err := p.run(postfixCmd, "-c", p.ConfigDir, "start"); err != nil {
		t.Fatalf("postfix -c %s start: %v\n%s\nlog:\n%s", p.ConfigDir, err, out, p.Log())
	}
	return p
}

// Addr returns the "127.0.0.1:PORT" where this Postfix's smtpd listens.
func (p *Postfix) Addr() string { return "127.0.0.1:" + strconv.Itoa(p.port) }

// Port returns the smtpd port.
func (p *Postfix) Port() int { return p.port }

// Log returns the Postfix log so far ("" when there is none yet).
func (p *Postfix) Log() string {
	b, err := os.ReadFile(p.LogFile)
	if err != nil {
		return ""
	}
	return string(b)
}

// WaitLog waits until a line of the Postfix log matches re and returns
// that line; it fails the test after timeout. Use it to wait for a queue
// id's fate (e.g. `QUEUEID: .*status=sent`) or for a milter-reject line.
func (p *Postfix) WaitLog(t testing.TB, re *regexp.Regexp, timeout time.Duration) string {
	t.Helper()
	line, ok := waitForLine(p.LogFile, re, timeout)
	if !ok {
		t.Fatalf("postfix log: no line matching %q within %v; log:\n%s", re, timeout, p.Log())
	}
	return line
}

// waitForLine polls a log file for a line matching re. A log file can only
// be observed by reading it, so this polls at a short interval until the
// deadline.
func waitForLine(path string, re *regexp.Regexp, timeout time.Duration) (string, bool) {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if b, err := os.ReadFile(path); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if re.MatchString(line) {
					return line, true
				}
			}
		}
		if time.Now().After(deadline) {
			return "", false
		}
		<-tick.C
	}
}

// Sendmail submits msg through this instance's sendmail command
// ("sendmail -C CONFIGDIR -i -f FROM -- RCPTS"), i.e. through postdrop,
// pickup and cleanup, where non_smtpd_milters apply. It returns the
// command's combined output. The command returns once the message is in
// the maildrop queue; wait for the outcome with Sink.WaitFor or WaitLog.
func (p *Postfix) Sendmail(t testing.TB, from string, rcpts []string, msg []byte) (string, error) {
	t.Helper()
	args := []string{"-C", p.ConfigDir, "-i", "-f", from, "--"}
	args = append(args, rcpts...)
	ctx, cancel := context.WithTimeout(context.Background(), postfixTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.sendmail, args...)
	cmd.Stdin = bytes.NewReader(msg)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("sendmail -C %s -f %q %q: %w", p.ConfigDir, from, rcpts, err)
	}
	return string(out), nil
}

// QueueIDs lists the queue ids of the messages still in this instance's
// queue (postqueue -j), e.g. deferred ones.
func (p *Postfix) QueueIDs(t testing.TB) []string {
	t.Helper()
	out, err := p.run(p.postqueue, "-c", p.ConfigDir, "-j")
	if err != nil {
		t.Fatalf("postqueue -c %s -j: %v\n%s", p.ConfigDir, err, out)
	}
	var ids []string
	re := regexp.MustCompile(`"queue_id": *"([0-9A-Za-z]+)"`)
	for _, m := range re.FindAllStringSubmatch(out, -1) {
		ids = append(ids, m[1])
	}
	return ids
}

// QueueEntry is one message of postqueue -j's output.
type QueueEntry struct {
	QueueName string `json:"queue_name"` // "hold", "deferred", "active", "incoming", "maildrop"
	QueueID   string `json:"queue_id"`
	Sender    string `json:"sender"`
}

// Queue lists the messages in this instance's queues (postqueue -j), held
// ones included.
func (p *Postfix) Queue(t testing.TB) []QueueEntry {
	t.Helper()
	out, err := p.run(p.postqueue, "-c", p.ConfigDir, "-j")
	if err != nil {
		t.Fatalf("postqueue -c %s -j: %v\n%s", p.ConfigDir, err, out)
	}
	var entries []QueueEntry
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var e QueueEntry
		if line != "" && json.Unmarshal([]byte(line), &e) == nil {
			entries = append(entries, e)
		}
	}
	return entries
}

// Postsuper is the postsuper command line for this instance, e.g. for a
// release command: append "-H", QUEUEID.
func (p *Postfix) Postsuper() []string {
	return []string{filepath.Join(filepath.Dir(p.postqueue), "postsuper"), "-c", p.ConfigDir}
}

// Postqueue is the postqueue command line for this instance with args
// appended, as a JSON list (for a config's command).
func (p *Postfix) Postqueue(args ...string) string {
	b, _ := json.Marshal(append([]string{p.postqueue, "-c", p.ConfigDir}, args...))
	return string(b)
}

// Flush asks this instance to retry its deferred mail now (postqueue -f).
func (p *Postfix) Flush(t testing.TB) {
	t.Helper()
	if out, err := p.run(p.postqueue, "-c", p.ConfigDir, "-f"); err != nil {
		t.Fatalf("postqueue -c %s -f: %v\n%s", p.ConfigDir, err, out)
	}
}

func (p *Postfix) run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), postfixTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// stop terminates master and waits until every process of its process
// group (master's children) has exited, so that the directories can be
// removed. master does on SIGTERM what "postfix stop" does, but without
// that command's one-second polling; processes that master forked but that
// had not yet run their program linger for a second after it, so they are
// killed once master is gone.
func (p *Postfix) stop(t testing.TB) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(p.QueueDir, "pid", "master.pid"))
	if err != nil {
		return // never started
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		t.Errorf("stop postfix: bad master.pid %q", b)
		return
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return // already gone
	}
	if !waitGone(10*time.Second, func() bool { return processAlive(pid) }) {
		t.Errorf("stop postfix: master (pid %d) still running 10s after SIGTERM; killing it", pid)
	}
	syscall.Kill(-pid, syscall.SIGKILL)
	if !waitGone(5*time.Second, func() bool { return processGroupAlive(pid) }) {
		t.Errorf("stop postfix: processes of group %d survive SIGKILL", pid)
	}
}

// waitGone polls alive until it returns false or timeout passes. Process
// exits of non-children cannot be waited for, only observed.
func waitGone(timeout time.Duration, alive func() bool) bool {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for alive() {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}

// processAlive reports whether pid runs and is not a zombie (in a container
// whose init does not reap, exited daemons stay zombies).
func processAlive(pid int) bool {
	state, _, ok := procStat(pid)
	return ok && state != "Z" && state != "X"
}

// processGroupAlive reports whether a live (non-zombie) process is in
// process group pgid. master calls setsid(), so its group is its pid.
func processGroupAlive(pgid int) bool {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return syscall.Kill(-pgid, 0) == nil
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		state, group, ok := procStat(pid)
		if ok && group == pgid && state != "Z" && state != "X" {
			return true
		}
	}
	return false
}

// procStat returns the state letter and process group of pid from
// /proc/PID/stat ("pid (comm) state ppid pgrp ..."; comm may hold spaces).
func procStat(pid int) (state string, pgrp int, ok bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return "", 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", 0, false
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 3 {
		return "", 0, false
	}
	pgrp, err = strconv.Atoi(fields[2])
	if err != nil {
		return "", 0, false
	}
	return fields[0], pgrp, true
}

// postfixMetaDir is Debian's meta_directory, holding postfix-files.
const postfixMetaDir = "/etc/postfix"

// makePostfixDirs creates the queue and data directories listed in
// META/postfix-files ("$queue_directory/active:d:$mail_owner:-:700:ucr"),
// with their owner, group and mode; mail_owner is postfix and setgid_group
// postdrop, as in the generated main.cf.
func makePostfixDirs(metaDir, queueDir, dataDir string) error {
	list := filepath.Join(metaDir, "postfix-files")
	b, err := os.ReadFile(list)
	if err != nil {
		return fmt.Errorf("read postfix's directory list: %w", err)
	}
	made := 0
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Split(line, ":")
		if len(fields) < 5 || fields[1] != "d" {
			continue
		}
		var path string
		switch {
		case fields[0] == "$data_directory":
			path = dataDir
		case fields[0] == "$queue_directory":
			path = queueDir
		case strings.HasPrefix(fields[0], "$queue_directory/"):
			path = filepath.Join(queueDir, strings.TrimPrefix(fields[0], "$queue_directory/"))
		default:
			continue
		}
		mode, err := strconv.ParseUint(fields[4], 8, 32)
		if err != nil {
			return fmt.Errorf("%s: bad mode in %q: %w", list, line, err)
		}
		uid, gid := -1, -1
		switch fields[2] {
		case "$mail_owner":
			if uid, err = lookupUID("postfix"); err != nil {
				return err
			}
		case "root":
			uid = 0
		}
		if fields[3] == "$setgid_group" {
			if gid, err = lookupGID("postdrop"); err != nil {
				return err
			}
		}
		if err := os.MkdirAll(path, 0o755); err != nil {
			return err
		}
		if err := os.Chown(path, uid, gid); err != nil {
			return fmt.Errorf("chown %q: %w", path, err)
		}
		if err := os.Chmod(path, os.FileMode(mode)); err != nil {
			return err
		}
		made++
	}
	if made < 10 {
		return fmt.Errorf("%s lists only %d queue/data directories; is it Postfix's?", list, made)
	}
	return nil
}

func lookupUID(name string) (int, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, fmt.Errorf("look up user %q: %w", name, err)
	}
	return strconv.Atoi(u.Uid)
}

func lookupGID(name string) (int, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, fmt.Errorf("look up group %q: %w", name, err)
	}
	return strconv.Atoi(g.Gid)
}

// MilterSetting renders one milter with per-milter settings in Postfix's
// "{ name, key=value, ... }" form (Postfix 3.0 and later).
func MilterSetting(addr, defaultAction string, connect, command, content time.Duration) string {
	return fmt.Sprintf("{ %s, default_action=%s, connect_timeout=%ds, command_timeout=%ds, content_timeout=%ds }",
		addr, defaultAction, seconds(connect), seconds(command), seconds(content))
}

func seconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}

func orDuration(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func postfixMainCF(opts PostfixOptions, queueDir, dataDir, logFile, base string, port int) string {
	action := opts.MilterDefaultAction
	if action == "" {
		action = "tempfail"
	}
	protocol := opts.MilterProtocol
	if protocol == 0 {
		protocol = 6
	}
	mynetworks := opts.MyNetworks
	if mynetworks == "" {
		mynetworks = "127.0.0.0/8 192.0.2.0/24 198.51.100.0/24 203.0.113.0/24"
	}
	milter := func(addr string) string {
		if addr == "" {
			return ""
		}
		return MilterSetting(addr, action,
			orDuration(opts.MilterConnectTimeout, 5*time.Second),
			orDuration(opts.MilterCommandTimeout, 5*time.Second),
			orDuration(opts.MilterContentTimeout, 10*time.Second))
	}
	settings := map[string]string{
		"compatibility_level": "3.6",
		"queue_directory":     queueDir,
		"data_directory":      dataDir,
		"mail_owner":          "postfix",
		"setgid_group":        "postdrop",
		// Logging to a file through the postlog service (master.cf), so
		// tests read their own instance's log; the file must lie under one
		// of maillog_file_prefixes.
		"maillog_file":          logFile,
		"maillog_file_prefixes": base,
		"syslog_name":           fmt.Sprintf("postfix-%d", port),
		"myhostname":            "mta.test",
		"mydomain":              "test",
		"myorigin":              "$myhostname",
		"mydestination":         "",
		"local_recipient_maps":  "",
		"alias_maps":            "",
		"alias_database":        "",
		"inet_interfaces":       "loopback-only",
		"inet_protocols":        "ipv4",
		"mynetworks":            mynetworks,
		"relayhost":             "[" + strings.Replace(opts.RelayTo, ":", "]:", 1),
		"smtp_host_lookup":      "native",
		"smtpd_peername_lookup": "no",
		"smtpd_relay_restrictions": "permit_mynetworks, permit_sasl_authenticated, " +
			"reject_unauth_destination",
		// XCLIENT lets tests impersonate clients and SASL logins; Postfix
		// ignores XCLIENT LOGIN unless SASL is enabled (Cyrus, no users).
		"smtpd_authorized_xclient_hosts": "127.0.0.0/8",
		"smtpd_sasl_auth_enable":         "yes",
		"biff":                           "no",
		"milter_protocol":                strconv.Itoa(protocol),
		"milter_default_action":          action,
		"smtpd_milters":                  milter(opts.SMTPDMilter),
		"non_smtpd_milters":              milter(opts.NonSMTPDMilter),
		// Keep failed deliveries from lingering in a test.
		"maximal_queue_lifetime": "1h",
		"bounce_queue_lifetime":  "1h",
	}
	for k, v := range opts.ExtraMainCF {
		settings[k] = v
	}
	names := make([]string, 0, len(settings))
	for k := range settings {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("# Written by internal/testenv for one test; removed when it ends.\n")
	for _, k := range names {
		fmt.Fprintf(&b, "%s = %s\n", k, settings[k])
	}
	return b.String()
}

// postfixMasterCF is a minimal master.cf: smtpd on the test port, the
// services a relay needs, no chroot (the temporary queue directory has no
// /etc inside), and postlog for maillog_file.
func postfixMasterCF(port int) string {
	return fmt.Sprintf(`# Written by internal/testenv for one test; removed when it ends.
# service type  private unpriv  chroot  wakeup  maxproc command
127.0.0.1:%d inet n   -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
local     unix  -       n       n       -       -       local
`, port)
}

package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SendmailDebsEnv names the directory holding Debian's sendmail-bin,
// sendmail-base, sendmail-cf and liblockfile1 .deb files (fetched with
// "apt-get download"; .ci/run does it). Debian's sendmail and postfix
// packages conflict, so Sendmail is unpacked from these per test instead
// of installed. Default: $XDG_CACHE_HOME/abusemilter/sendmail-debs.
const SendmailDebsEnv = "ABUSEMILTER_SENDMAIL_DEBS"

// SendmailPackages are the Debian packages StartSendmail unpacks.
var SendmailPackages = []string{"sendmail-bin", "sendmail-base", "sendmail-cf", "liblockfile1"}

// SendmailOptions describe a Sendmail instance for a test.
type SendmailOptions struct {
	// MilterSocket is the milter in Sendmail notation
	// ("inet:PORT@127.0.0.1"). Required.
	MilterSocket string
	// RelayTo is the "127.0.0.1:PORT" all mail is relayed to. Required.
	RelayTo string
	// MilterSnippet is the .mc fragment that connects the milter; default
	// configs/sendmail/abusemilter.mc of this repository, so the test
	// exercises the shipped file. It must honour ABUSEMILTER_SOCKET.
	MilterSnippet string
}

// Sendmail is a running Sendmail 8.17 MTA (sendmail -bD) unpacked from
// Debian's packages, with its own .cf, queue and SMTP traffic log.
type Sendmail struct {
	// Dir holds the .mc, the .cf, the queue and the traffic log.
	Dir string
	// ConfigFile is the generated sendmail.cf.
	ConfigFile string
	// TrafficLog is the file given to sendmail -X: every SMTP line in and
	// out, including the relay to the sink.
	TrafficLog string

	port    int
	unshare string // runs a sendmail command like the daemon (see command)
	root    string // the unpacked packages
}

// StartSendmail unpacks Sendmail, builds a .cf with m4 and runs the daemon
// in the foreground on a free 127.0.0.1 port until the test ends.
//
// Sendmail resolves its own host name at start-up, before reading its
// configuration; so that this never leaves the machine, it runs in private
// mount and UTS namespaces (unshare) with its host name set to mta.test and
// /etc/hosts and /etc/nsswitch.conf replaced by files-only versions. It
// logs only to syslog (absent here), hence the traffic log instead.
func StartSendmail(t testing.TB, opts SendmailOptions) *Sendmail {
	t.Helper()
	if opts.MilterSocket == "" || opts.RelayTo == "" {
		t.Fatalf("start sendmail: SendmailOptions.MilterSocket and RelayTo are required")
	}
	m4 := RequireTool(t, "m4")
	dpkgDeb := RequireTool(t, "dpkg-deb")
	unshare := RequireTool(t, "unshare")
	RequireRoot(t, "Sendmail runs as root, in its own mount namespace")
	if out, err := exec.Command(unshare, "--mount", "--uts", "true").CombinedOutput(); err != nil {
		Unavailable(t, "test needs private mount and UTS namespaces (unshare --mount --uts): %v: %s", err, out)
	}
	debs := sendmailDebs(t)

	snippet := opts.MilterSnippet
	if snippet == "" {
		root, err := repoRoot()
		if err != nil {
			t.Fatalf("start sendmail: %v", err)
		}
		snippet = filepath.Join(root, "configs", "sendmail", "abusemilter.mc")
	}
	if _, err := os.Stat(snippet); err != nil {
		t.Fatalf("start sendmail: milter snippet: %v", err)
	}
	_, sinkPort, err := net.SplitHostPort(opts.RelayTo)
	if err != nil {
		t.Fatalf("start sendmail: RelayTo %q: %v", opts.RelayTo, err)
	}

	dir, err := os.MkdirTemp("", "testenv-sendmail-")
	if err != nil {
		t.Fatalf("start sendmail: %v", err)
	}
	s := &Sendmail{
		Dir:        dir,
		ConfigFile: filepath.Join(dir, "sendmail.cf"),
		TrafficLog: filepath.Join(dir, "traffic.log"),
		port:       FreePort(t),
	}
	var cmd *exec.Cmd
	exited := make(chan struct{}) // closed when the daemon has exited
	t.Cleanup(func() {
		if cmd != nil && cmd.Process != nil {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				t.Errorf("stop sendmail: still running 10s after SIGTERM; killing it")
				syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-exited
			}
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // connection children
			waitGone(5*time.Second, func() bool { return processGroupAlive(cmd.Process.Pid) })
		}
		if t.Failed() {
			t.Logf("sendmail traffic log:\n%s", s.Traffic())
		}
		os.RemoveAll(dir)
	})

	root := filepath.Join(dir, "root")
	for _, deb := range debs {
		if out, err := exec.Command(dpkgDeb, "-x", deb, root).CombinedOutput(); err != nil {
			t.Fatalf("start sendmail: dpkg-deb -x %s: %v\n%s", deb, err, out)
		}
	}
	for _, sub := range []string{"queue", "etc", "dev"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatalf("start sendmail: %v", err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "queue"), 0o700); err != nil {
		t.Fatalf("start sendmail: %v", err)
	}
	files := map[string]string{
		"etc/service.switch": "hosts files\naliases files\n",
		"etc/hosts":          "127.0.0.1 mta.test localhost\n",
		"etc/nsswitch.conf":  "hosts: files\npasswd: files\ngroup: files\n",
		"sendmail.mc":        sendmailMC(dir, root, snippet, opts.MilterSocket, s.port, sinkPort),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatalf("start sendmail: %v", err)
		}
	}
	cfDir := filepath.Join(root, "usr", "share", "sendmail", "cf") + "/"
	cf, err := exec.Command(m4, "-D_CF_DIR_="+cfDir, filepath.Join(dir, "sendmail.mc")).Output()
	if err != nil {
		t.Fatalf("start sendmail: m4 %s: %v", filepath.Join(dir, "sendmail.mc"), err)
	}
	if err := os.WriteFile(s.ConfigFile, cf, 0o644); err != nil {
		t.Fatalf("start sendmail: %v", err)
	}

	s.unshare, s.root = unshare, root
	cmd = s.command("-bD", "-X", s.TrafficLog)
	output, err := os.Create(filepath.Join(dir, "sendmail.out"))
	if err != nil {
		t.Fatalf("start sendmail: %v", err)
	}
	defer output.Close()
	cmd.Stdout, cmd.Stderr = output, output
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sendmail: %v", err)
	}
	go func() {
		cmd.Wait()
		close(exited)
	}()
	if err := waitListening(s.Addr(), 20*time.Second, exited); err != nil {
		out, _ := os.ReadFile(output.Name())
		t.Fatalf("start sendmail: %v\noutput:\n%s", err, out)
	}
	return s
}

// sendmailScript runs the unpacked sendmail in its private namespaces (see
// StartSendmail).
const sendmailScript = `set -e
D="$1"; ROOT="$2"; shift 2
hostname mta.test
mount --bind "$D/etc/hosts" /etc/hosts
mount --bind "$D/etc/nsswitch.conf" /etc/nsswitch.conf
export LD_LIBRARY_PATH="$ROOT/usr/lib/x86_64-linux-gnu"
exec "$ROOT/usr/libexec/sendmail/sendmail" "$@"
`

// command is the unpacked sendmail with this instance's .cf and args, in
// private mount and UTS namespaces like the daemon.
func (s *Sendmail) command(args ...string) *exec.Cmd {
	return exec.Command(s.unshare, append([]string{"--mount", "--uts", "--", "sh", "-c", sendmailScript, "sh", s.Dir, s.root,
		"-C", s.ConfigFile}, args...)...)
}

// Quarantined lists Sendmail's quarantined messages ("mailq -qQ", i.e.
// sendmail -bp -qQ): each line with a queue id, and the reason the milter
// gave on the line after it.
func (s *Sendmail) Quarantined(t testing.TB) string {
	t.Helper()
	out, err := s.command("-bp", "-qQ").CombinedOutput()
	if err != nil {
		t.Fatalf("sendmail -bp -qQ: %v\n%s", err, out)
	}
	return string(out)
}

// Addr returns the "127.0.0.1:PORT" where Sendmail listens.
func (s *Sendmail) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Traffic returns the SMTP traffic log so far.
func (s *Sendmail) Traffic() string {
	b, _ := os.ReadFile(s.TrafficLog)
	return string(b)
}

// waitListening waits until addr accepts TCP connections, the process
// exits, or timeout passes.
func waitListening(addr string, timeout time.Duration, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("exited before listening on %s", addr)
		case <-ctx.Done():
			return fmt.Errorf("not listening on %s after %v: %w", addr, timeout, err)
		case <-tick.C:
		}
	}
}

// sendmailDebs finds the .deb files of SendmailPackages, or stops the test.
func sendmailDebs(t testing.TB) []string {
	t.Helper()
	dir := os.Getenv(SendmailDebsEnv)
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			Unavailable(t, "no %s and no cache directory: %v", SendmailDebsEnv, err)
		}
		dir = filepath.Join(cache, "abusemilter", "sendmail-debs")
	}
	var debs []string
	for _, pkg := range SendmailPackages {
		matches, _ := filepath.Glob(filepath.Join(dir, pkg+"_*.deb"))
		if len(matches) == 0 {
			Unavailable(t, "test needs Debian's %s package in %s (apt-get download %s; .ci/run does this, or set %s)",
				pkg, dir, strings.Join(SendmailPackages, " "), SendmailDebsEnv)
		}
		debs = append(debs, matches[len(matches)-1])
	}
	return debs
}

// repoRoot finds the module root (the directory with go.mod) above the
// working directory, which is the package directory under go test.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// sendmailMC is the test instance's .mc: every path under dir, no DNS,
// relay everything to the sink, and the shipped milter snippet. The
// template writes m4's opening quote as ‘ (Go raw strings cannot hold a
// backquote); it is replaced before use.
func sendmailMC(dir, root, snippet, milterSocket string, port int, sinkPort string) string {
	mc := fmt.Sprintf(`divert(-1)
Written by internal/testenv for one test; removed when it ends.
divert(0)dnl
include(_CF_DIR_‘m4/cf.m4')dnl
VERSIONID(‘abusemilter testenv')dnl
OSTYPE(‘linux')dnl
define(‘confDOMAIN_NAME', ‘mta.test')dnl
define(‘QUEUE_DIR', ‘%[1]s/queue')dnl
define(‘confPID_FILE', ‘%[1]s/sendmail.pid')dnl
define(‘STATUS_FILE', ‘%[1]s/statistics')dnl
define(‘HELP_FILE', ‘%[2]s/etc/mail/helpfile')dnl
define(‘ALIAS_FILE', ‘')dnl
define(‘confCR_FILE', ‘-o %[1]s/etc/relay-domains')dnl
define(‘confCW_FILE', ‘-o %[1]s/etc/local-host-names')dnl
define(‘confSERVICE_SWITCH_FILE', ‘%[1]s/etc/service.switch')dnl
define(‘confHOSTS_FILE', ‘%[1]s/etc/hosts')dnl
define(‘confTO_IDENT', ‘0')dnl
define(‘confDONT_PROBE_INTERFACES', ‘true')dnl
define(‘confDELIVERY_MODE', ‘background')dnl
dnl A busy test machine (load average 15-25 on 2 cores) must not make
dnl Sendmail refuse connections or only queue mail (RefuseLA, QueueLA).
define(‘confREFUSE_LA', ‘1000')dnl
define(‘confQUEUE_LA', ‘1000')dnl
define(‘confDELAY_LA', ‘0')dnl
define(‘SMART_HOST', ‘relay:[127.0.0.1]')dnl
define(‘RELAY_MAILER_ARGS', ‘TCP $h %[5]s')dnl
define(‘ESMTP_MAILER_ARGS', ‘TCP $h %[5]s')dnl
FEATURE(‘accept_unresolvable_domains')dnl
FEATURE(‘accept_unqualified_senders')dnl
FEATURE(‘nocanonify')dnl
FEATURE(‘no_default_msa')dnl
DAEMON_OPTIONS(‘Family=inet, Name=MTA-v4, Port=%[4]d, Addr=127.0.0.1')dnl
define(‘ABUSEMILTER_SOCKET', ‘%[6]s')dnl
include(‘%[3]s')dnl
MAILER(‘smtp')dnl
`, dir, root, snippet, port, sinkPort, milterSocket)
	return strings.ReplaceAll(mc, "‘", "`")
}

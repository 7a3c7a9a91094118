package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/testutil/testenv"

	gomilter "github.com/emersion/go-milter"

	"github.com/abusemilter/abusemilter/internal/cli"
	"github.com/abusemilter/abusemilter/internal/config"
	"github.com/abusemilter/abusemilter/internal/daemon"
	"github.com/abusemilter/abusemilter/internal/testutil/miltertest"
	"github.com/abusemilter/abusemilter/internal/testutil/redistest"
	"github.com/abusemilter/abusemilter/milter"
	"github.com/abusemilter/abusemilter/ratelimit"
)

// testConfig is an account alice (login alice) that may send as
// example.com, at most 3 messages an hour; two refused messages within an
// hour lock an account. %s is the redis address.
const testConfig = `
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
  exempt:
    accounts: [relay]
strikes:
  threshold: 2
  window: 1h
  lock_action: defer
  contact: abuse@provider.example
redis:
  url: redis://%s
  key_prefix: "t:"
  timeout: 2s
`

// testUser is the operator the tests record in the audit log.
const testUser = "oncall-test"

// fixture is a real redis-server, a config file pointing at it, a milter
// serving the engine over that store on 127.0.0.1, and an env as the
// commands get it.
type fixture struct {
	redis      *redistest.Server
	configPath string
	milterAddr string
	milter     *ratelimit.Redis // the milter's limiter, to watch its Recent cache
	env        *env
}

// writeConfig writes a config for the redis at addr and returns its path.
func writeConfig(t testing.TB, format string, args ...any) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "abusemilter.yaml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(format, args...)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// newFixture starts redis and a milter and connects an env through the
// same code path as the command line.
func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{redis: redistest.Start(t)}
	f.configPath = writeConfig(t, testConfig, f.redis.Addr())
	f.env = connectEnv(t, globalOptions{ConfigPath: f.configPath, Timeout: 3 * time.Second})
	f.milterAddr, f.milter = startMilter(t, f.configPath)
	return f
}

// connectEnv builds an env as the commands do (globalOptions.run), with a fixed operator.
func connectEnv(t testing.TB, g globalOptions) *env {
	t.Helper()
	e := &env{now: time.Now, user: testUser}
	if err := e.connect(context.Background(), g, config.Lookup{}); err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(e.close)
	return e
}

// startMilter serves the daemon's engine over the config's Redis store on
// 127.0.0.1:0, with the daemon's default options: its Recent cache (a
// per-process shortcut that refuses at MAIL FROM what this milter itself
// refused, see docs/abusectl.md) is on, and it returns once the limiter's
// subscription to admin changes is confirmed (refusals cached before are
// dropped then, which would race with the tests).
func startMilter(t testing.TB, configPath string) (string, *ratelimit.Redis) {
	t.Helper()
	cfg, err := config.Load(configPath)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := daemon.Directory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lim, err := daemon.RedisStore(cfg, ratelimit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lim.Close() })
	redistest.WaitFor(t, 10*time.Second, "the milter's subscription to admin changes", lim.Subscribed)
	srv := milter.New(milter.Options{Engine: daemon.Engine(cfg, dir, lim, nil), CheckTimeout: 5 * time.Second})
	return miltertest.Serve(t, srv), lim
}

// milterCaches checks that the milter caches a refusal of account: the
// next message would be refused at MAIL FROM without asking Redis.
func (f *fixture) milterCaches(t testing.TB, account string) {
	t.Helper()
	if _, ok := f.milter.Recent(account); !ok {
		t.Fatalf("the milter does not cache the refusal of %s", account)
	}
}

// waitMilterForgets waits until the milter drops its cached refusal of
// account after an abusectl change. The change reaches the milter by Redis
// PUBLISH and is applied on the limiter's own goroutine, so it is
// asynchronous: a deadline bounds the wait (without the invalidation the
// refusal would stay for RecentMax, a minute).
func (f *fixture) waitMilterForgets(t testing.TB, account string) {
	t.Helper()
	redistest.WaitFor(t, 10*time.Second, "the milter to drop its cached refusal of "+account, func() bool {
		_, ok := f.milter.Recent(account)
		return !ok
	})
}

var msgSeq atomic.Int64

// verdict is what the milter answered for one message: the SMTP code and
// text of the first refusal, or 0 when accepted.
type verdict struct {
	code int
	text string
}

func (v verdict) accepted() bool { return v.code == 0 }

// send submits one message as login from fromHeader with n recipients,
// over a fresh milter session as Postfix does, and returns the verdict of
// MAIL FROM or end of message.
func (f *fixture) send(t testing.TB, login, fromHeader string, n int) verdict {
	t.Helper()
	s := testenv.MilterSession(t, f.milterAddr, 10*time.Second)
	defer s.Close()
	cont := func(stage string, a *gomilter.Action, err error) {
		t.Helper()
		if err != nil || a.Code != gomilter.ActContinue {
			t.Fatalf("%s: %v %+v", stage, err, a)
		}
	}
	if err := s.Macros(gomilter.CodeConn, "{client_addr}", "192.0.2.10", "{client_name}", "client.example.net"); err != nil {
		t.Fatal(err)
	}
	a, err := s.Conn("client.example.net", gomilter.FamilyInet, 40000, "192.0.2.10")
	cont("connect", a, err)
	a, err = s.Helo("client.example.net")
	cont("helo", a, err)
	env := fromHeader // the envelope sender is the From address
	if err := s.Macros(gomilter.CodeMail, "{mail_addr}", env, "{auth_authen}", login, "{auth_type}", "PLAIN", "{client_addr}", "192.0.2.10"); err != nil {
		t.Fatal(err)
	}
	if a, err = s.Mail(env, nil); err != nil {
		t.Fatalf("mail: %v", err)
	}
	if a.Code != gomilter.ActContinue {
		_ = s.Abort()
		return verdict{a.SMTPCode, a.SMTPText}
	}
	qid := fmt.Sprintf("4C%05X", msgSeq.Add(1)) // each message its own queue id, as Postfix gives
	for i := range n {
		rc := fmt.Sprintf("rcpt%d@dest.example", i)
		if err := s.Macros(gomilter.CodeRcpt, "{rcpt_addr}", rc, "i", qid); err != nil {
			t.Fatal(err)
		}
		if a, err = s.Rcpt(rc, nil); err != nil {
			t.Fatalf("rcpt: %v", err)
		}
		if a.Code != gomilter.ActContinue {
			_ = s.Abort()
			return verdict{a.SMTPCode, a.SMTPText}
		}
	}
	for _, h := range [][2]string{{"From", fromHeader}, {"Message-Id", fmt.Sprintf("<%d.ctl@example.com>", msgSeq.Add(1))}, {"Subject", "hello"}} {
		a, err := s.HeaderField(h[0], h[1])
		cont("header", a, err)
	}
	a, err = s.HeaderEnd()
	cont("eoh", a, err)
	_, end, err := s.BodyReadFrom(strings.NewReader("Hello,\r\n\r\nsee you.\r\n"))
	if err != nil {
		t.Fatalf("end of message: %v", err)
	}
	_ = s.Abort()
	if end.Code == gomilter.ActAccept || end.Code == gomilter.ActContinue {
		return verdict{}
	}
	return verdict{end.SMTPCode, end.SMTPText}
}

// mustAccept and mustRefuse check a verdict.
func mustAccept(t testing.TB, what string, v verdict) {
	t.Helper()
	if !v.accepted() {
		t.Fatalf("%s: refused %d %s, want accepted", what, v.code, v.text)
	}
}

func mustRefuse(t testing.TB, what string, v verdict, code int, rule string) {
	t.Helper()
	if v.code != code || !strings.Contains(v.text, rule) {
		t.Fatalf("%s: got %d %q, want %d naming %s", what, v.code, v.text, code, rule)
	}
}

// runCmd runs one command through the real command line (the cobra root,
// flags, exit code) and returns stdout, stderr and the exit code.
func runCmd(t testing.TB, args ...string) (string, string, int) {
	t.Helper()
	return runWith(t, deps{now: time.Now, user: testUser}, args...)
}

// runWith is runCmd with the process dependencies given.
func runWith(t testing.TB, d deps, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRootCommand(d, &out, &errOut)
	root.SetContext(context.Background())
	code := cli.Execute(root, args)
	return out.String(), errOut.String(), code
}

// exitCode is the exit code the command line ends with when a command
// returns err (commandError decides it).
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var ee *cli.ExitError
	if !errors.As(commandError(err), &ee) {
		panic("commandError returned no exit code")
	}
	return ee.Code
}

package milter_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/abusemilter/abusemilter/internal/config"
	"github.com/abusemilter/abusemilter/internal/daemon"
	"github.com/abusemilter/abusemilter/internal/testutil/miltertest"
	"github.com/abusemilter/abusemilter/internal/testutil/testenv"
	"github.com/abusemilter/abusemilter/milter"
	"github.com/abusemilter/abusemilter/scoring"
)

// baseConfig is an account "alice" (SASL login alice) that may send as
// example.com, at most 2 recipients per message.
const baseConfig = `
identity:
  login_is_address: false
  accounts:
    alice:
      logins: [alice]
      send_as: [example.com]
limits:
  max_recipients_per_message: 2
  account_messages: ["100/1h"]
`

func newEngine(t testing.TB, yaml string) *scoring.Engine {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml), "test.yaml")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	dir, err := daemon.Directory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lim, err := daemon.Limiter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return daemon.Engine(cfg, dir, lim, nil)
}

// logBuffer is a goroutine-safe log sink.
type logBuffer struct{ testenv.SyncBuffer }

// decisions returns the decision log lines, decoded.
func (b *logBuffer) decisions(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not one JSON object: %q: %v", line, err)
		}
		if m["msg"] == "decision" {
			out = append(out, m)
		}
	}
	return out
}

func jsonLogger(w *logBuffer) *zap.Logger {
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(w), zap.DebugLevel))
}

type harness struct {
	srv  *milter.Server
	addr string
	logs *logBuffer
}

// start serves a milter on a loopback port until the test ends.
func start(t testing.TB, opts milter.Options) *harness {
	t.Helper()
	logs := &logBuffer{}
	if opts.Logger == nil {
		opts.Logger = jsonLogger(logs)
	}
	srv := milter.New(opts)
	return &harness{srv: srv, addr: miltertest.Serve(t, srv), logs: logs}
}

// session opens a negotiated client session, as Postfix does.
func (h *harness) session(t testing.TB) *gomilter.ClientSession {
	t.Helper()
	s := testenv.MilterSession(t, h.addr, 5*time.Second)
	return s
}

// connect sends the connect and HELO stages.
func connect(t testing.TB, s *gomilter.ClientSession, clientAddr string) {
	t.Helper()
	if err := s.Macros(gomilter.CodeConn, "{client_addr}", clientAddr, "{client_name}", "client.example.net"); err != nil {
		t.Fatal(err)
	}
	mustContinue(t, "connect")(s.Conn("client.example.net", gomilter.FamilyInet, 40000, clientAddr))
	mustContinue(t, "helo")(s.Helo("client.example.net"))
}

// message is one transaction as a test sends it.
type message struct {
	login   string // {auth_authen} at MAIL; "" sends no login macro
	client  string // {client_addr} at MAIL; "" sends none
	from    string
	rcpts   []string
	headers [][2]string
	body    string
}

func (m message) mailMacros() []string {
	kv := []string{"{mail_addr}", m.from}
	if m.login != "" {
		kv = append(kv, "{auth_authen}", m.login, "{auth_type}", "PLAIN")
	}
	if m.client != "" {
		kv = append(kv, "{client_addr}", m.client)
	}
	return kv
}

// result is what the milter answered for a message.
type result struct {
	mail  *gomilter.Action
	rcpts []*gomilter.Action
	mods  []gomilter.ModifyAction
	end   *gomilter.Action
}

// send runs one transaction up to end of message (or up to the first
// refusal at MAIL) and finishes it with ABORT, as Postfix does.
func send(t testing.TB, s *gomilter.ClientSession, m message) result {
	t.Helper()
	var r result
	var err error
	if err := s.Macros(gomilter.CodeMail, m.mailMacros()...); err != nil {
		t.Fatal(err)
	}
	if r.mail, err = s.Mail(m.from, nil); err != nil {
		t.Fatalf("mail: %v", err)
	}
	if r.mail.Code != gomilter.ActContinue {
		abort(t, s)
		return r
	}
	for i, rc := range m.rcpts {
		if err := s.Macros(gomilter.CodeRcpt, "{rcpt_addr}", rc, "i", "QID"+strings.Repeat("x", i)); err != nil {
			t.Fatal(err)
		}
		a, err := s.Rcpt(rc, nil)
		if err != nil {
			t.Fatalf("rcpt %q: %v", rc, err)
		}
		r.rcpts = append(r.rcpts, a)
	}
	for _, h := range m.headers {
		mustContinue(t, "header "+h[0])(s.HeaderField(h[0], h[1]))
	}
	mustContinue(t, "eoh")(s.HeaderEnd())
	if r.mods, r.end, err = s.BodyReadFrom(strings.NewReader(m.body)); err != nil {
		t.Fatalf("end of message: %v", err)
	}
	abort(t, s)
	return r
}

func abort(t testing.TB, s *gomilter.ClientSession) {
	t.Helper()
	if err := s.Abort(); err != nil {
		t.Fatalf("abort: %v", err)
	}
}

// mailFrom sends m's MAIL-stage macros and MAIL FROM, which must continue.
func mailFrom(t testing.TB, s *gomilter.ClientSession, m message) {
	t.Helper()
	if err := s.Macros(gomilter.CodeMail, m.mailMacros()...); err != nil {
		t.Fatal(err)
	}
	mustContinue(t, "mail")(s.Mail(m.from, nil))
}

func mustContinue(t testing.TB, stage string) func(*gomilter.Action, error) {
	return func(a *gomilter.Action, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", stage, err)
		}
		if a.Code != gomilter.ActContinue {
			t.Fatalf("%s: action %q (%d %s), want continue", stage, a.Code, a.SMTPCode, a.SMTPText)
		}
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, 5*time.Second, what, cond)
}

func alice(from string, rcpts ...string) message {
	return message{
		login: "alice", client: "192.0.2.10", from: "alice@example.com", rcpts: rcpts,
		headers: [][2]string{{"From", from}, {"Date", time.Now().Format(time.RFC1123Z)}, {"Message-Id", fmt.Sprintf("<%d@example.com>", msgSeq.Add(1))}, {"Subject", "hello"}},
		body:    "Hello Bob,\r\n\r\nsee you.\r\n",
	}
}

var msgSeq atomic.Int64

package testenv

import (
	"maps"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-milter"
)

// The in-test milter stands in for the real daemon: its verdicts depend on
// the message so that every kind of MTA reply can be produced, and it
// records what the MTA told it (stage, argument, macros).
//
//   - RCPT TO over@...                -> 452 4.5.3 for that recipient only
//   - envelope sender contains reject -> 550 5.7.1 at end of message
//   - envelope sender contains defer  -> 451 4.7.1 at end of message
//   - anything else                   -> accept

const (
	testReplyTooManyRcpts = "452 4.5.3 Too many recipients (test milter)"
	testReplyReject       = "550 5.7.1 Rejected by the test milter"
	testReplyDefer        = "451 4.7.1 Deferred by the test milter"
)

// testMacros are requested at every stage with SETSYMLIST, so the log of
// events shows which ones an MTA fills in where.
var testMacros = []string{
	"i", "j", "_", "v",
	"{daemon_name}", "{daemon_addr}", "{daemon_port}",
	"{client_addr}", "{client_name}", "{client_port}", "{client_ptr}", "{client_connections}",
	"{auth_type}", "{auth_authen}", "{auth_author}",
	"{mail_addr}", "{mail_host}", "{mail_mailer}",
	"{rcpt_addr}", "{rcpt_host}", "{rcpt_mailer}",
}

// milterEvent is one callback the test milter received.
type milterEvent struct {
	Stage  string // connect, helo, mail, rcpt, eoh, eom, abort
	Arg    string // connect: client addr; helo: name; mail/rcpt: address; eom: envelope sender
	Macros map[string]string
}

// testMilter is a running in-test milter server.
type testMilter struct {
	ln      net.Listener
	mu      sync.Mutex
	events  []milterEvent
	changed chan struct{}
}

// startTestMilter serves the test milter on a free loopback port until the
// test ends. Postfix names it "inet:" + Addr().
func startTestMilter(t *testing.T) *testMilter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("start test milter: %v", err)
	}
	return serveTestMilter(t, ln)
}

// serveTestMilter serves the test milter on ln until the test ends.
func serveTestMilter(t *testing.T, ln net.Listener) *testMilter {
	t.Helper()
	tm := &testMilter{ln: ln, changed: make(chan struct{})}
	symList := map[milter.Stage][]string{}
	for _, st := range []milter.Stage{milter.StageConnect, milter.StageHelo, milter.StageMailFrom,
		milter.StageRcptTo, milter.StageData, milter.StageEOH, milter.StageEOM} {
		symList[st] = testMacros
	}
	srv := &milter.Server{
		NewMilter: func() milter.Milter { return &testMilterSession{tm: tm} },
		Actions:   milter.OptSetSymList,
		SymList:   symList,
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	// Close the listener ourselves rather than srv.Close(): the latter
	// writes a flag that Serve's goroutine reads without synchronisation.
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return tm
}

// Addr returns "inet:127.0.0.1:PORT" for Postfix's smtpd_milters.
func (tm *testMilter) Addr() string { return "inet:" + tm.ln.Addr().String() }

// Port returns the TCP port.
func (tm *testMilter) Port() int { return tm.ln.Addr().(*net.TCPAddr).Port }

func (tm *testMilter) record(stage, arg string, macros map[string]string) {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	tm.events = append(tm.events, milterEvent{Stage: stage, Arg: arg, Macros: maps.Clone(macros)})
	close(tm.changed)
	tm.changed = make(chan struct{})
}

// Events returns a copy of every event so far.
func (tm *testMilter) Events() []milterEvent {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return append([]milterEvent(nil), tm.events...)
}

// waitEvents waits until at least n events match, and returns the matches.
func (tm *testMilter) waitEvents(t *testing.T, n int, what string, match func(milterEvent) bool) []milterEvent {
	t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	for {
		tm.mu.Lock()
		var found []milterEvent
		for _, e := range tm.events {
			if match(e) {
				found = append(found, e)
			}
		}
		changed := tm.changed
		tm.mu.Unlock()
		if len(found) >= n {
			return found
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("test milter: waited 20s for %d %s event(s), saw %d; all events: %+v", n, what, len(found), tm.Events())
		}
	}
}

// waitEvent waits for the first event at stage whose Arg equals arg.
func (tm *testMilter) waitEvent(t *testing.T, stage, arg string) milterEvent {
	t.Helper()
	return tm.waitEvents(t, 1, stage+" "+arg, func(e milterEvent) bool {
		return e.Stage == stage && e.Arg == arg
	})[0]
}

// testMilterSession is the state of one milter conversation; go-milter
// makes a new one after each message.
type testMilterSession struct {
	tm   *testMilter
	from string
}

var _ milter.Milter = (*testMilterSession)(nil)

func (s *testMilterSession) Connect(host, family string, port uint16, addr net.IP, m *milter.Modifier) (milter.Response, error) {
	s.tm.record("connect", addr.String(), m.Macros)
	return milter.RespContinue, nil
}

func (s *testMilterSession) Helo(name string, m *milter.Modifier) (milter.Response, error) {
	s.tm.record("helo", name, m.Macros)
	return milter.RespContinue, nil
}

func (s *testMilterSession) MailFrom(from string, m *milter.Modifier) (milter.Response, error) {
	s.from = from
	s.tm.record("mail", from, m.Macros)
	return milter.RespContinue, nil
}

func (s *testMilterSession) RcptTo(rcpt string, m *milter.Modifier) (milter.Response, error) {
	s.tm.record("rcpt", rcpt, m.Macros)
	if strings.HasPrefix(strings.ToLower(rcpt), "over@") {
		return milter.NewResponseStr(byte(milter.ActReplyCode), testReplyTooManyRcpts), nil
	}
	return milter.RespContinue, nil
}

func (s *testMilterSession) Header(name, value string, m *milter.Modifier) (milter.Response, error) {
	return milter.RespContinue, nil
}

func (s *testMilterSession) Headers(h textproto.MIMEHeader, m *milter.Modifier) (milter.Response, error) {
	s.tm.record("eoh", s.from, m.Macros)
	return milter.RespContinue, nil
}

func (s *testMilterSession) BodyChunk(chunk []byte, m *milter.Modifier) (milter.Response, error) {
	return milter.RespContinue, nil
}

func (s *testMilterSession) Body(m *milter.Modifier) (milter.Response, error) {
	s.tm.record("eom", s.from, m.Macros)
	from := strings.ToLower(s.from)
	switch {
	case strings.Contains(from, "reject"):
		return milter.NewResponseStr(byte(milter.ActReplyCode), testReplyReject), nil
	case strings.Contains(from, "defer"):
		return milter.NewResponseStr(byte(milter.ActReplyCode), testReplyDefer), nil
	}
	return milter.RespAccept, nil
}

func (s *testMilterSession) Abort(m *milter.Modifier) error {
	s.tm.record("abort", s.from, m.Macros)
	return nil
}

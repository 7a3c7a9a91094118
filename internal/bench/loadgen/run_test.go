package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-milter"
)

// policyMilter is a test milter with a known policy: it rejects every
// message whose Message-ID index (see Generate) is a multiple of 4 with a
// 550 reply at end of message, defers every recipient after the third with
// a 452 reply, adds a header to the messages it accepts, and counts what it
// saw so the test can hold the client's report against it.
type policyMilter struct {
	stats *serverStats
	// per message
	rcpts   int
	index   int
	badMail bool
}

type serverStats struct {
	connects, mails, ends, rejects atomic.Int64
	deferredRcpts                  atomic.Int64
	macroFaults                    atomic.Int64
	mu                             sync.Mutex
	faults                         []string
}

func (s *serverStats) fault(format string, args ...any) {
	s.macroFaults.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.faults) < 5 {
		s.faults = append(s.faults, fmt.Sprintf(format, args...))
	}
}

func (p *policyMilter) Connect(host, family string, port uint16, addr net.IP, m *milter.Modifier) (milter.Response, error) {
	p.stats.connects.Add(1)
	if m.Macros["{client_addr}"] != addr.String() {
		p.stats.fault("connect: {client_addr} %q, CONNECT address %v", m.Macros["{client_addr}"], addr)
	}
	return milter.RespContinue, nil
}

func (p *policyMilter) Helo(name string, m *milter.Modifier) (milter.Response, error) {
	return milter.RespContinue, nil
}

func (p *policyMilter) MailFrom(from string, m *milter.Modifier) (milter.Response, error) {
	p.stats.mails.Add(1)
	p.rcpts, p.index = 0, -1
	if m.Macros["{mail_addr}"] != from || m.Macros["{auth_authen}"] == "" || m.Macros["i"] == "" || m.Macros["{client_addr}"] == "" {
		p.stats.fault("mail: macros %v for sender %q", m.Macros, from)
	}
	return milter.RespContinue, nil
}

func (p *policyMilter) RcptTo(rcpt string, m *milter.Modifier) (milter.Response, error) {
	if m.Macros["{rcpt_addr}"] != rcpt {
		p.stats.fault("rcpt: {rcpt_addr} %q for %q", m.Macros["{rcpt_addr}"], rcpt)
	}
	p.rcpts++
	if p.rcpts > 3 {
		p.stats.deferredRcpts.Add(1)
		return milter.NewResponseStr(byte(milter.ActReplyCode), "452 4.5.3 Too many recipients"), nil
	}
	return milter.RespContinue, nil
}

func (p *policyMilter) Header(name, value string, m *milter.Modifier) (milter.Response, error) {
	if strings.EqualFold(name, "Message-ID") {
		p.index = messageIndex(value)
	}
	return milter.RespContinue, nil
}

func (p *policyMilter) Headers(h textproto.MIMEHeader, m *milter.Modifier) (milter.Response, error) {
	return milter.RespContinue, nil
}

func (p *policyMilter) BodyChunk(chunk []byte, m *milter.Modifier) (milter.Response, error) {
	return milter.RespContinue, nil
}

func (p *policyMilter) Body(m *milter.Modifier) (milter.Response, error) {
	p.stats.ends.Add(1)
	if m.Macros["i"] == "" || m.Macros["{auth_authen}"] == "" {
		p.stats.fault("end: macros %v", m.Macros)
	}
	if p.index >= 0 && p.index%4 == 0 {
		p.stats.rejects.Add(1)
		return milter.NewResponseStr(byte(milter.ActReplyCode),
			"550 5.7.1 Rejected under the e-mail abuse policy (impersonation: FROM_DOMAIN_NOT_OWNED)"), nil
	}
	if err := m.AddHeader("X-Abuse-Check", "pass"); err != nil {
		return nil, err
	}
	return milter.RespAccept, nil
}

func (p *policyMilter) Abort(m *milter.Modifier) error { return nil }

// messageIndex reads N from a generated Message-ID "<N.SEED@domain>".
func messageIndex(id string) int {
	n, err := strconv.Atoi(strings.TrimPrefix(strings.SplitN(id, ".", 2)[0], "<"))
	if err != nil {
		return -1
	}
	return n
}

func startPolicyServer(t *testing.T, network string) (*LocalServer, *serverStats) {
	t.Helper()
	stats := &serverStats{}
	srv, err := StartServer(network, &milter.Server{
		NewMilter: func() milter.Milter { return &policyMilter{stats: stats} },
		Actions:   milter.OptAddHeader | milter.OptChangeHeader,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close server: %v", err)
		}
	})
	return srv, stats
}

func startNoOp(t *testing.T, network string) *LocalServer {
	t.Helper()
	srv, err := StartNoOp(network)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close no-op server: %v", err)
		}
	})
	return srv
}

func testPool(t *testing.T, n int) Pool {
	t.Helper()
	pool, err := Generate(GenerateOptions{Count: n, Accounts: 20, ForgedShare: 0.1, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	return pool
}

func headerValue(m *Message, name string) string {
	for _, f := range m.Header {
		if strings.EqualFold(f.Name, name) {
			return f.Value
		}
	}
	return ""
}

func TestRunVerdictCountsAreExact(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			srv, stats := startPolicyServer(t, network)
			pool := testPool(t, 50)
			const count = 130 // cycles through the pool, not a multiple of its size
			var wantRejects, wantDeferred, wantAccepted int64
			for n := range int64(count) {
				m := pool.Message(n)
				if messageIndex(headerValue(m, "Message-ID"))%4 == 0 {
					wantRejects++
				}
				wantAccepted += int64(min(len(m.Recipients), 3))
				wantDeferred += int64(max(len(m.Recipients)-3, 0))
			}
			if wantRejects == 0 || wantDeferred == 0 {
				t.Fatalf("the pool does not exercise the policy: %d rejects, %d deferred recipients", wantRejects, wantDeferred)
			}

			rep, err := Run(context.Background(), Options{
				Target: srv.Target, Source: pool, Count: count, Concurrency: 6, MessagesPerConn: 4,
			})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Messages != count || rep.Failed != 0 {
				t.Fatalf("messages %d, failed %d (errors %v), want %d and 0", rep.Messages, rep.Failed, rep.ErrorSamples, count)
			}
			if got := rep.Verdicts["reject"]; got != wantRejects || got != stats.rejects.Load() {
				t.Errorf("rejects: report %d, server %d, want %d", got, stats.rejects.Load(), wantRejects)
			}
			if got := rep.Verdicts["accept"]; got != count-wantRejects {
				t.Errorf("accepts %d, want %d (verdicts %v)", got, count-wantRejects, rep.Verdicts)
			}
			if got := rep.VerdictStages["reject@end"]; got != wantRejects {
				t.Errorf("reject@end %d, want %d", got, wantRejects)
			}
			if got := rep.Recipients["452"]; got != wantDeferred || got != stats.deferredRcpts.Load() {
				t.Errorf("452 recipients: report %d, server %d, want %d", got, stats.deferredRcpts.Load(), wantDeferred)
			}
			if got := rep.Recipients["accepted"]; got != wantAccepted {
				t.Errorf("accepted recipients %d, want %d", got, wantAccepted)
			}
			if got := rep.Modifications["add-header"]; got != count-wantRejects {
				t.Errorf("add-header modifications %d, want %d", got, count-wantRejects)
			}
			wantReplies := map[string]int64{
				"end|550 5.7.1 Rejected under the e-mail abuse policy (impersonation: FROM_DOMAIN_NOT_OWNED)": wantRejects,
				"rcpt|452 4.5.3 Too many recipients": wantDeferred,
			}
			for _, r := range rep.Replies {
				key := r.Stage + "|" + r.Reply
				if wantReplies[key] != r.Count {
					t.Errorf("reply %q counted %d, want %d", key, r.Count, wantReplies[key])
				}
				delete(wantReplies, key)
			}
			if len(wantReplies) > 0 {
				t.Errorf("replies missing from the report: %v", wantReplies)
			}
			if stats.mails.Load() != count || stats.ends.Load() != count {
				t.Errorf("server saw %d MAIL and %d end of message, want %d each", stats.mails.Load(), stats.ends.Load(), count)
			}
			if n := stats.macroFaults.Load(); n > 0 {
				t.Errorf("%d macro faults, first: %v", n, stats.faults)
			}
			for _, l := range rep.Latency {
				// 4 messages per connection: at least 130/4 connections, at
				// most one more per worker for its last, partial one.
				if l.Stage == StageOpen && (l.Count != uint64(stats.connects.Load()) || l.Count < count/4 || l.Count > count/4+6) {
					t.Errorf("%d connections opened (server saw %d) for %d messages, 4 per connection", l.Count, stats.connects.Load(), count)
				}
				if l.Stage == StageMessage && l.Count != count {
					t.Errorf("message latency has %d samples, want %d", l.Count, count)
				}
				if l.Count > 0 && (l.P50 > l.P99 || l.P99 > l.Max) {
					t.Errorf("stage %s: p50 %v > p99 %v or p99 > max %v", l.Stage, l.P50, l.P99, l.Max)
				}
			}
		})
	}
}

// failingMilter closes the connection (by returning an error) at the
// Message-ID header of every fifth message.
type failingMilter struct{ milter.NoOpMilter }

func (failingMilter) Header(name, value string, m *milter.Modifier) (milter.Response, error) {
	if strings.EqualFold(name, "Message-ID") && messageIndex(value)%5 == 0 {
		return nil, errors.New("test milter fails on purpose")
	}
	return milter.RespContinue, nil
}

func TestRunCountsBrokenSessionsAndRecovers(t *testing.T) {
	srv, err := StartServer("tcp", &milter.Server{NewMilter: func() milter.Milter { return failingMilter{} }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	pool := testPool(t, 40)
	rep, err := Run(context.Background(), Options{Target: srv.Target, Source: pool, Count: 40, Concurrency: 3, MessagesPerConn: 10})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed != 8 || rep.Messages != 32 {
		t.Errorf("failed %d, messages %d, want 8 and 32 (errors %v)", rep.Failed, rep.Messages, rep.Errors)
	}
	if got := rep.Errors["header: connection closed"]; got != 8 {
		t.Errorf("header errors %d, want 8 (errors %v, samples %v)", got, rep.Errors, rep.ErrorSamples)
	}
}

func TestRunCountModeSendsExactlyCount(t *testing.T) {
	srv, stats := startPolicyServer(t, "tcp")
	rep, err := Run(context.Background(), Options{Target: srv.Target, Source: testPool(t, 20), Count: 77, Concurrency: 5, MessagesPerConn: 3})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Messages != 77 || stats.mails.Load() != 77 {
		t.Errorf("report %d messages, server %d MAIL, want 77", rep.Messages, stats.mails.Load())
	}
	// Client and server both run here: 77 messages cost some CPU time, and
	// never more than the run's wall time on every CPU.
	if rep.ProcessCPUSeconds <= 0 || rep.ProcessCPUSeconds > rep.ElapsedSeconds*float64(runtime.NumCPU())+0.1 {
		t.Errorf("process CPU %v s for a run of %v s", rep.ProcessCPUSeconds, rep.ElapsedSeconds)
	}
}

func TestRunWithRateSendsCountAndJudgesTheRate(t *testing.T) {
	srv := startNoOp(t, "tcp")
	rep, err := Run(context.Background(), Options{Target: srv.Target, Source: testPool(t, 10), Count: 30, Rate: 300, Concurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Messages != 30 {
		t.Errorf("messages %d, want 30", rep.Messages)
	}
	if rep.RateReached == nil || rep.TargetRate != 300 {
		t.Errorf("rate verdict missing: target %v, reached %v", rep.TargetRate, rep.RateReached)
	}
}

func TestRunDurationModeStopsByItself(t *testing.T) {
	srv := startNoOp(t, "unix")
	start := time.Now()
	rep, err := Run(context.Background(), Options{Target: srv.Target, Source: testPool(t, 10), Duration: 200 * time.Millisecond, Concurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Minute {
		t.Errorf("a 200ms run took %v", took)
	}
	if rep.Messages == 0 || rep.Failed != 0 {
		t.Errorf("messages %d, failed %d (errors %v)", rep.Messages, rep.Failed, rep.ErrorSamples)
	}
	if rep.Verdicts["accept"] != rep.Messages {
		t.Errorf("no-op milter: verdicts %v, want all %d accept", rep.Verdicts, rep.Messages)
	}
}

func TestRunAgainstClosedPortCountsErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	rep, err := Run(context.Background(), Options{
		Target: Target{Network: "tcp", Address: addr}, Source: testPool(t, 5), Count: 12, Concurrency: 3,
	})
	if err != nil {
		t.Fatalf("a dead milter is a measurement, not a failure of Run: %v", err)
	}
	if rep.Messages != 0 || rep.Failed != 12 || rep.Errors["open: connection refused"] != 12 {
		t.Errorf("messages %d, failed %d, errors %v; want 0, 12, 12 refused", rep.Messages, rep.Failed, rep.Errors)
	}
	var sb strings.Builder
	if err := rep.WriteText(&sb); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sb.String(), "open: connection refused") {
		t.Errorf("text report does not show the error kind:\n%s", sb.String())
	}
}

func TestReportJSONParses(t *testing.T) {
	srv, _ := startPolicyServer(t, "tcp")
	rep, err := Run(context.Background(), Options{Target: srv.Target, Source: testPool(t, 8), Count: 16, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatalf("report JSON does not parse: %v\n%s", err, data)
	}
	if back.Messages != 16 || back.Verdicts["reject"] != rep.Verdicts["reject"] || len(back.Latency) != len(Stages) {
		t.Errorf("round trip lost data: %+v", back)
	}
	var generic map[string]any
	if err := json.Unmarshal(data, &generic); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"messages_per_second", "latency", "verdicts", "recipients", "errors"} {
		if _, ok := generic[key]; !ok {
			t.Errorf("JSON report has no %q", key)
		}
	}
}

func TestRunRejectsInvalidOptions(t *testing.T) {
	_, err := Run(context.Background(), Options{Target: Target{Network: "udp", Address: "x"}, Concurrency: -1})
	if err == nil {
		t.Fatal("invalid options accepted")
	}
	for _, want := range []string{`network "udp"`, "no message source", "concurrency -1", "would not end"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestRunDurationAgainstDeadMilterBacksOff(t *testing.T) {
	rep, err := Run(context.Background(), Options{
		Target: Target{Network: "unix", Address: filepath.Join(t.TempDir(), "none.sock")}, Source: testPool(t, 5),
		Duration: 300 * time.Millisecond, Concurrency: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Spinning on dial errors would fail thousands of messages in 300ms;
	// backing off from 10ms fails a handful per worker.
	if rep.Failed == 0 || rep.Failed > 100 || rep.Errors["open: no such socket"] != rep.Failed {
		t.Errorf("failed %d, errors %v", rep.Failed, rep.Errors)
	}
}

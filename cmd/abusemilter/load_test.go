package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/abusemilter/abusemilter/internal/bench/loadgen"
)

// loadConfig has two customers of three logins each, as loadgen generates
// them (user1..3@customer1.example, user4..6@customer2.example); no rate
// limit or strike lock gets in the way of the verdicts under test. alice is
// there for the hand-driven sessions of binary_test.go's helpers.
const loadConfigTemplate = `
listen: inet:127.0.0.1:0
mode: %s
session:
  shutdown_grace: 20s
identity:
  login_is_address: false
  accounts:
    alice:
      logins: [alice]
      send_as: [example.com]
    c1:
      logins: [user1@customer1.example, user2@customer1.example, user3@customer1.example]
      send_as: [customer1.example]
    c2:
      logins: [user4@customer2.example, user5@customer2.example, user6@customer2.example]
      send_as: [customer2.example]
limits:
  max_recipients_per_message: 100
  account_messages: ["100000000/1h"]
strikes:
  threshold: 0
`

func loadConfigText(mode string) string { return fmt.Sprintf(loadConfigTemplate, mode) }

// loadPool is 200 generated messages from the six logins, a quarter of them
// with a From domain the account does not own.
func loadPool(t *testing.T) loadgen.Pool {
	t.Helper()
	pool, err := loadgen.Generate(loadgen.GenerateOptions{Count: 200, Accounts: 6, ForgedShare: 0.25, BodySize: 2000, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	return pool
}

// countLines counts log lines with the given message from index from on,
// for which match (nil: any) holds.
func (p *proc) countLines(msg string, from int, match func(map[string]any) bool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for i := from; i < len(p.lines); i++ {
		if p.lines[i]["msg"] == msg && (match == nil || match(p.lines[i])) {
			n++
		}
	}
	return n
}

func (p *proc) numLines() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.lines)
}

// waitCount waits until countLines reaches n.
func (p *proc) waitCount(t *testing.T, what, msg string, from, n int, match func(map[string]any) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for p.countLines(msg, from, match) < n {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %d %s; got %d", n, what, p.countLines(msg, from, match))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startLoad runs loadgen against addr at concurrency 16 until ctx ends.
func startLoad(ctx context.Context, t *testing.T, addr string) <-chan *loadgen.Report {
	t.Helper()
	reports := make(chan *loadgen.Report, 1)
	pool := loadPool(t)
	go func() {
		rep, err := loadgen.Run(ctx, loadgen.Options{
			Target: loadgen.Target{Network: "tcp", Address: addr}, Source: pool,
			Concurrency: 16, Duration: time.Minute, MessagesPerConn: 5, Timeout: 10 * time.Second,
		})
		if err != nil {
			t.Error(err)
		}
		reports <- rep
	}()
	return reports
}

// startedStages are the stages at which a failure means the message had not
// begun from the milter's point of view (it closed between messages or
// refused the connection); a failure anywhere else broke a message in flight.
var startedStages = map[string]bool{loadgen.StageOpen: true, loadgen.StageConnect: true, loadgen.StageHelo: true, loadgen.StageMail: true, "abort": true}

// TestBinarySIGTERMUnderLoad stops the daemon while 16 connections send
// messages and one session of ours holds a message open: the stop closes
// the listener (new connections are refused while the process still runs),
// every message in flight finishes with a verdict, and the process exits
// within its grace period once the last message is done.
func TestBinarySIGTERMUnderLoad(t *testing.T) {
	cfg := writeConfig(t, t.TempDir(), loadConfigText("enforce"))
	p := startDaemon(t, "--config", cfg)
	addr := milterAddr(t, p)

	held := clientSession(t, addr)
	startMessage(t, held, 1)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reports := startLoad(ctx, t, addr)
	p.waitCount(t, "decisions under load", "decision", 0, 300, nil)

	stopAt := time.Now()
	p.signal(t, syscall.SIGTERM)
	p.waitLog(t, "waiting for messages in progress", 0)
	// The stop has begun and our message holds the process: new
	// connections must be refused now.
	refusedBy := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("dialing a stopping daemon: %v, want connection refused", err)
			}
			break
		}
		c.Close()
		if time.Now().After(refusedBy) {
			t.Fatal("the stopping daemon still accepts connections")
		}
	}
	select {
	case <-p.exited:
		t.Fatal("the daemon exited with a message in progress")
	default:
	}
	// The load stops taking new messages; the ones in flight finish while
	// our held message keeps the daemon in its stop.
	cancel()
	rep := <-reports
	_, stopping := p.waitLog(t, "stopping", 0)

	if _, a := endMessage(t, held); a.Code != gomilter.ActAccept {
		t.Fatalf("the held message after SIGTERM: %q %d %s", a.Code, a.SMTPCode, a.SMTPText)
	}
	held.Abort()
	code := p.waitExit(t)
	took := time.Since(stopAt)
	if code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	if took > 20*time.Second {
		t.Fatalf("exit %v after SIGTERM, over the 20s grace", took)
	}
	// Decision lines are buffered (logging.DefaultFlushInterval) and all
	// written by the exit: count them once the process is gone.
	finishedInStop := p.countLines("decision", stopping, func(m map[string]any) bool { return m["account"] != "alice" })

	t.Logf("SIGTERM under load: %d messages with a verdict (%d of them finished after the signal), %d failed to start (%v), exit %v after the signal",
		rep.Messages, finishedInStop, rep.Failed, rep.Errors, took.Round(time.Millisecond))
	if finishedInStop == 0 {
		t.Error("no message of the load was in flight at the signal; the test proved nothing about them")
	}
	if rep.Messages < 300 {
		t.Fatalf("only %d messages got a verdict", rep.Messages)
	}
	for key, n := range rep.Errors {
		stage, _, _ := strings.Cut(key, ": ")
		if !startedStages[stage] {
			t.Errorf("%d messages broke in flight at %q (e.g. %s)", n, key, rep.ErrorSamples[key])
		}
	}
	if n := p.countLines("sessions still in a message after the grace period were closed", 0, nil); n != 0 {
		t.Fatal("sessions were cut at the end of the grace period")
	}
}

// TestBinarySIGHUPUnderLoad reloads a changed config (enforce -> monitor)
// while 16 connections send messages: the verdicts change (forged From is
// rejected before, annotated and accepted after) and no session breaks.
func TestBinarySIGHUPUnderLoad(t *testing.T) {
	cfg := writeConfig(t, t.TempDir(), loadConfigText("enforce"))
	p := startDaemon(t, "--config", cfg)
	addr := milterAddr(t, p)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reports := startLoad(ctx, t, addr)

	rejected := func(m map[string]any) bool { return m["action"] == "reject" && m["monitor"] == false }
	monitored := func(m map[string]any) bool { return m["action"] == "reject" && m["monitor"] == true }
	p.waitCount(t, "enforced rejections", "decision", 0, 50, rejected)

	writeConfig(t, filepath.Dir(cfg), loadConfigText("monitor"))
	p.signal(t, syscall.SIGHUP)
	_, after := p.waitLog(t, "config reloaded", 0)
	p.waitCount(t, "monitor-mode decisions after the reload", "decision", after, 50, monitored)
	cancel()
	rep := <-reports

	t.Logf("SIGHUP under load: %d messages, verdicts %v, modifications %v, errors %v", rep.Messages, rep.Verdicts, rep.Modifications, rep.Errors)
	if rep.Failed != 0 || len(rep.Errors) != 0 {
		t.Fatalf("sessions broke during the reload: %d failed, %v %v", rep.Failed, rep.Errors, rep.ErrorSamples)
	}
	if rep.Verdicts["reject"] == 0 || rep.Modifications["add-header"] == 0 {
		t.Fatalf("want enforced rejections before and monitor headers after the reload: verdicts %v, modifications %v", rep.Verdicts, rep.Modifications)
	}
	// Once reloaded, no message is enforced any more (a message in flight
	// at the reload may still finish under the old engine, but none after).
	if n := p.countLines("decision", p.numLines()-20, rejected); n != 0 {
		t.Fatalf("%d enforced rejections among the last decisions after the reload", n)
	}
	p.signal(t, syscall.SIGTERM)
	if code := p.waitExit(t); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

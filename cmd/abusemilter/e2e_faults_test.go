package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/abusemilter/abusemilter/internal/bench/perftest"
	"github.com/abusemilter/abusemilter/internal/testutil/redistest"
	"github.com/abusemilter/abusemilter/internal/testutil/testenv"
	"github.com/abusemilter/abusemilter/ratelimit"
)

// e2eFaultFull runs the Redis-outage test at its full size (5,000
// messages); the default size keeps CI fast. See docs/RELIABILITY-E2E.md.
var e2eFaultFull = flag.Bool("e2efault.full", false, "run the end-to-end Redis outage test with 5,000 messages instead of 1,000")

const (
	e2eFaultConns       = 32 // concurrent SMTP connections of the load driver
	e2eFaultPerConn     = 25 // messages per SMTP connection before QUIT and a new one
	e2eFaultRedisTO     = 200 * time.Millisecond
	e2eFaultLoadTimeout = 5 * time.Minute
)

// e2eFaultConfig is the daemon's config for the fault tests: "load" has
// room for every message the test sends, "bulk" may send one message an
// hour (to show that limits apply again after an outage).
func e2eFaultConfig(redisAddr, failMode string) string {
	return fmt.Sprintf(`
listen: inet:127.0.0.1:0
metrics:
  listen: 127.0.0.1:0
dns:
  enabled: false
redis:
  url: redis://%s
  timeout: %s
redis_failure: %s
identity:
  accounts:
    load:
      logins: [load]
      send_as: [load.example]
    bulk:
      logins: [bulk]
      send_as: [bulk.example]
      limits:
        account_messages: [1/1h]
limits:
  account_messages: [1000000/1h]
`, redisAddr, e2eFaultRedisTO, failMode)
}

// e2eFaultResult is the fate of one message sent by the load driver.
type e2eFaultResult struct {
	code int
	text string
	at   time.Time // when the end-of-data reply arrived
	err  error     // a transport failure (never expected)
}

// e2eFaultSMTP is a minimal SMTP client that returns errors instead of
// failing the test, so that load goroutines can use it (testenv.DialSMTP
// calls t.Fatalf, which only the test goroutine may).
type e2eFaultSMTP struct {
	conn net.Conn
	tp   *textproto.Conn
}

// e2eFaultDial connects, says EHLO and impersonates an authenticated
// customer with XCLIENT LOGIN (Postfix hands the login to the milter as
// {auth_authen}).
func e2eFaultDial(addr, login, clientAddr string) (*e2eFaultSMTP, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c := &e2eFaultSMTP{conn: conn, tp: textproto.NewConn(conn)}
	steps := []struct {
		line string
		want int
	}{{"", 220}, {"EHLO load.test", 250}, {"XCLIENT LOGIN=" + login + " ADDR=" + clientAddr, 220}, {"EHLO load.test", 250}}
	for _, s := range steps {
		code, text, err := c.cmd(s.line)
		if err == nil && code != s.want {
			err = fmt.Errorf("%q: reply %d %s, want %d", s.line, code, text, s.want)
		}
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("smtp session setup: %w", err)
		}
	}
	return c, nil
}

// cmd sends a line ("" sends nothing: read the greeting) and reads the reply.
func (c *e2eFaultSMTP) cmd(line string) (int, string, error) {
	c.conn.SetDeadline(time.Now().Add(30 * time.Second))
	if line != "" {
		if err := c.tp.PrintfLine("%s", line); err != nil {
			return 0, "", fmt.Errorf("send %q: %w", line, err)
		}
	}
	code, text, err := c.tp.ReadResponse(0)
	if err != nil {
		var perr *textproto.Error
		if !errors.As(err, &perr) {
			return 0, "", fmt.Errorf("reply to %q: %w", line, err)
		}
	}
	return code, text, nil
}

// send runs one transaction and returns the end-of-data reply (or the
// first refusal before it).
func (c *e2eFaultSMTP) send(from, to string, data []byte) (int, string, error) {
	for _, s := range []struct {
		line string
		want int
	}{{"MAIL FROM:<" + from + ">", 250}, {"RCPT TO:<" + to + ">", 250}, {"DATA", 354}} {
		code, text, err := c.cmd(s.line)
		if err != nil {
			return 0, "", err
		}
		if code != s.want {
			if _, _, err := c.cmd("RSET"); err != nil {
				return 0, "", err
			}
			return code, text, nil
		}
	}
	w := c.tp.DotWriter()
	if _, err := w.Write(data); err != nil {
		return 0, "", fmt.Errorf("message data: %w", err)
	}
	if err := w.Close(); err != nil {
		return 0, "", fmt.Errorf("end of message data: %w", err)
	}
	return c.cmd("")
}

func (c *e2eFaultSMTP) close() {
	c.cmd("QUIT")
	c.conn.Close()
}

// e2eFaultMessage is message number n of the load.
func e2eFaultMessage(from string, n int) []byte {
	return fmt.Appendf(nil, "From: %s\nTo: rcpt@example.org\nSubject: e2e-fault %d\nMessage-Id: <e2e-fault-%d@load.test>\n\nLoad message %d.\n", from, n, n, n)
}

// e2eFaultLoad is the SMTP load driver: conns goroutines, each with its own
// SMTP connection (a new one every perConn messages), take message numbers
// from a channel and record every reply.
type e2eFaultLoad struct {
	addr    string
	results []e2eFaultResult
	done    atomic.Int64
	// onDone is called (from a load goroutine) after each message with the
	// number of messages done so far.
	onDone func(done int64)
}

// run sends every message number that jobs yields and returns when jobs is
// closed and every message has its reply.
func (l *e2eFaultLoad) run(jobs <-chan int, conns int) {
	var wg sync.WaitGroup
	for w := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c *e2eFaultSMTP
			sent := 0
			defer func() {
				if c != nil {
					c.close()
				}
			}()
			for n := range jobs {
				r := &l.results[n]
				if c == nil || sent == e2eFaultPerConn {
					if c != nil {
						c.close()
					}
					var err error
					if c, err = e2eFaultDial(l.addr, "load", fmt.Sprintf("203.0.113.%d", 1+w)); err != nil {
						c, r.err, r.at = nil, err, time.Now()
						l.finish()
						continue
					}
					sent = 0
				}
				from := fmt.Sprintf("w%d@load.example", w)
				r.code, r.text, r.err = c.send(from, "rcpt@example.org", e2eFaultMessage(from, n))
				r.at = time.Now()
				sent++
				if r.err != nil {
					c.conn.Close()
					c = nil
				}
				l.finish()
			}
		}()
	}
	wg.Wait()
}

func (l *e2eFaultLoad) finish() {
	n := l.done.Add(1)
	if l.onDone != nil {
		l.onDone(n)
	}
}

// e2eFaultProc is what /proc says about the daemon: its RSS, threads and
// open fds, with the fds that are milter sessions (TCP connections on its
// listening port) and Redis connections (to the Redis port) counted apart.
type e2eFaultProc struct {
	rssKiB     int64
	threads    int
	fds        int
	sessions   int
	redisConns int
}

func (s e2eFaultProc) String() string {
	return fmt.Sprintf("RSS %.1f MiB, %d threads, %d fds (%d milter sessions, %d Redis connections)",
		float64(s.rssKiB)/1024, s.threads, s.fds, s.sessions, s.redisConns)
}

// other counts the fds that are neither milter sessions nor Redis
// connections (listener, log pipe, epoll, ...).
func (s e2eFaultProc) other() int { return s.fds - s.sessions - s.redisConns }

// e2eFaultReadProc reads the daemon's figures; milterPort and redisPort
// classify its TCP sockets (found by inode in /proc/net/tcp).
func e2eFaultReadProc(t *testing.T, pid, milterPort, redisPort int) e2eFaultProc {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read the daemon's /proc status: %v", err)
	}
	var s e2eFaultProc
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		switch k {
		case "VmRSS":
			s.rssKiB, _ = strconv.ParseInt(fields[0], 10, 64)
		case "Threads":
			s.threads, _ = strconv.Atoi(fields[0])
		}
	}
	if s.rssKiB == 0 || s.threads == 0 {
		t.Fatalf("no VmRSS/Threads in /proc/%d/status:\n%s", pid, b)
	}
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		t.Fatalf("list the daemon's fds: %v", err)
	}
	s.fds = len(fds)
	inodes := map[string]bool{}
	for _, fd := range fds {
		if target, err := os.Readlink(fdDir + "/" + fd.Name()); err == nil && strings.HasPrefix(target, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] = true
		}
	}
	tcp, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		t.Fatalf("read the daemon's TCP sockets: %v", err)
	}
	port := func(hexAddr string) int {
		_, p, _ := strings.Cut(hexAddr, ":")
		n, _ := strconv.ParseInt(p, 16, 32)
		return int(n)
	}
	for _, line := range strings.Split(string(tcp), "\n")[1:] {
		f := strings.Fields(line)
		// sl local rem st tx:rx tr:when retrnsmt uid timeout inode
		if len(f) < 10 || !inodes[f[9]] || f[3] == "0A" { // 0A: LISTEN
			continue
		}
		switch {
		case port(f[1]) == milterPort:
			s.sessions++
		case port(f[2]) == redisPort:
			s.redisConns++
		}
	}
	return s
}

// e2eFaultPostfixTrouble matches Postfix log lines that say the milter was
// slow, unreachable or broken, i.e. that milter_default_action applied.
// Our own refusals ("milter-reject: ... under the e-mail abuse policy")
// are not trouble.
var e2eFaultPostfixTrouble = regexp.MustCompile(`(?i)warning:.*milter|milter.*(timed out|timeout|can't read|can't write|connection refused|default_action)|service unavailable - try again later|4\.3\.5`)

// TestE2EFaultRedisOutagePostfix sends mail through a real Postfix while
// the rate store's redis-server is killed and restarted on the same port.
func TestE2EFaultRedisOutagePostfix(t *testing.T) {
	testenv.RequireTool(t, "postfix")
	testenv.RequireRoot(t, "Postfix's master starts as root")
	n := 1000
	if *e2eFaultFull {
		n = 5000
	}
	t.Run("accept", func(t *testing.T) { e2eFaultOutage(t, "accept", n, 10*time.Second) })
	t.Run("defer", func(t *testing.T) { e2eFaultOutage(t, "defer", n/2, 5*time.Second) })
}

// e2eFaultOutage runs one outage: a fifth of the messages with Redis up,
// then Redis is killed for outage while three fifths are sent, then it
// returns on the same port (empty) and the last fifth is sent.
func e2eFaultOutage(t *testing.T, failMode string, n int, outage time.Duration) {
	rs := redistest.Start(t)
	p := startDaemon(t, "--config", writeConfig(t, t.TempDir(), e2eFaultConfig(rs.Addr(), failMode)))
	addr := milterAddr(t, p)
	pid := p.cmd.Process.Pid
	_, portText, _ := strings.Cut(addr, ":")
	milterPort, _ := strconv.Atoi(portText)
	sink := testenv.StartSink(t)
	pf := testenv.StartPostfix(t, testenv.PostfixOptions{
		SMTPDMilter:         "inet:" + addr,
		MilterDefaultAction: "tempfail",
		RelayTo:             sink.Addr(),
		// Postfix slows down (smtpd_soft_error_limit, one second per error
		// past 10) and drops (smtpd_hard_error_limit, 20) a client that
		// collects 4xx replies; in defer mode every load connection does.
		// That tarpit is Postfix's, not the milter's: keep it out of the
		// figures.
		ExtraMainCF: map[string]string{"smtpd_soft_error_limit": "1000", "smtpd_hard_error_limit": "1000", "smtpd_error_sleep_time": "0"},
	})

	// Warm up (every connection once), then take the idle baseline.
	warm := &e2eFaultLoad{addr: pf.Addr(), results: make([]e2eFaultResult, 2*e2eFaultConns)}
	warmJobs := make(chan int, len(warm.results))
	for i := range warm.results {
		warmJobs <- i
	}
	close(warmJobs)
	warm.run(warmJobs, e2eFaultConns)
	for i, r := range warm.results {
		if r.err != nil || r.code != 250 {
			t.Fatalf("warm-up message %d: %d %s %v", i, r.code, r.text, r.err)
		}
	}
	baseline := e2eFaultSettle(t, pid, milterPort, rs.Port, nil)
	goroutinesURL := "http://" + metricsAddr(t, p) + "/metrics"
	baseGoroutines, err := perftest.Gauge(context.Background(), goroutinesURL, "go_goroutines")
	if err != nil {
		t.Fatalf("reading the daemon's goroutine count: %v", err)
	}
	t.Logf("baseline after %d warm-up messages: %s, %v goroutines", len(warm.results), baseline, baseGoroutines)

	// The load, in three phases fed by the test.
	load := &e2eFaultLoad{addr: pf.Addr(), results: make([]e2eFaultResult, n)}
	n1, n2 := n/5, n*4/5
	phase1Done := make(chan struct{})
	load.onDone = func(done int64) {
		if done == int64(n1) {
			close(phase1Done)
		}
	}
	jobs, killed, restarted, stop := make(chan int), make(chan struct{}), make(chan struct{}), make(chan struct{})
	defer close(stop)
	go func() {
		defer close(jobs)
		feed := func(from, to int) bool {
			for i := from; i < to; i++ {
				select {
				case jobs <- i:
				case <-stop:
					return false
				}
			}
			return true
		}
		for _, phase := range []struct {
			from, to int
			after    <-chan struct{}
		}{{0, n1, nil}, {n1, n2, killed}, {n2, n, restarted}} {
			if phase.after != nil {
				select {
				case <-phase.after:
				case <-stop:
					return
				}
			}
			if !feed(phase.from, phase.to) {
				return
			}
		}
	}()
	loadDone := make(chan struct{})
	start := time.Now()
	go func() { defer close(loadDone); load.run(jobs, e2eFaultConns) }()

	e2eFaultWait(t, phase1Done, loadDone, "the first fifth of the load")
	killAt := time.Now()
	rs.Kill()
	close(killed)
	// The outage lasts its full length; this timer is the fault, not a wait
	// for something to happen.
	<-time.After(outage)
	rs.Restart()
	restartAt := time.Now()
	close(restarted)

	// Limits apply again without a restart of the daemon: the bulk
	// account's second message within the hour is deferred.
	limitBack, bulkAccepted := e2eFaultLimitsBack(t, pf.Addr())
	t.Logf("451 ACCOUNT_MSG_RATE for the bulk account %v after Redis returned", limitBack.Round(time.Millisecond))

	e2eFaultWait(t, loadDone, nil, "the load to finish")
	elapsed := time.Since(start)

	// Every reply is the one the fail mode prescribes.
	byCode := map[string]int{}
	var lastStoreDeferral time.Duration
	accepted, during, afterBack := 0, 0, 0
	for i, r := range load.results {
		if r.err != nil {
			t.Errorf("message %d: transport failure: %v", i, r.err)
			continue
		}
		key := strconv.Itoa(r.code)
		if r.code == 451 && strings.Contains(r.text, "RATE_STORE_UNAVAILABLE") {
			key += " RATE_STORE_UNAVAILABLE"
		}
		byCode[key]++
		if r.at.After(killAt) && r.at.Before(restartAt) {
			during++
		}
		if i >= n2 {
			afterBack++
		}
		switch {
		case r.code == 250:
			accepted++
		case failMode == "defer" && r.code == 451 && strings.HasPrefix(r.text, "4.7.1 ") && strings.Contains(r.text, "RATE_STORE_UNAVAILABLE"):
			// The breaker probes once a second: a deferral may come just
			// after Redis returned, never before the outage.
			lastStoreDeferral = max(lastStoreDeferral, r.at.Sub(restartAt))
			if r.at.Before(killAt) || r.at.After(restartAt.Add(e2eFaultRecovery)) {
				t.Errorf("message %d deferred for the rate store outside the outage (%v after kill, restart at %v): %d %s",
					i, r.at.Sub(killAt), restartAt.Sub(killAt), r.code, r.text)
			}
		default:
			t.Errorf("message %d (redis_failure %s): reply %d %s", i, failMode, r.code, r.text)
		}
	}
	t.Logf("%d messages at concurrency %d in %v (%.0f msg/s); outage %v; replies %v; %d answered during the outage",
		n, e2eFaultConns, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), outage, byCode, during)
	if failMode == "defer" {
		t.Logf("last deferral for the rate store: %v after Redis returned", lastStoreDeferral.Round(time.Millisecond))
	}
	if during == 0 {
		t.Errorf("no message was answered while Redis was down: the outage was not exercised")
	}
	if failMode == "defer" && byCode["451 RATE_STORE_UNAVAILABLE"] == 0 {
		t.Errorf("redis_failure defer: no message was deferred during the outage")
	}
	limiterErrors := p.countDecisions(func(l map[string]any) bool { return l["limiter_error"] != nil && l["limiter_error"] != "" })
	p50, p99, worst := p.decisionMillis()
	t.Logf("decision log: %d decisions with limiter_error (the fail mode decided); MAIL-to-decision ms p50 %.1f, p99 %.1f, max %.1f",
		limiterErrors, p50, p99, worst)
	if limiterErrors == 0 {
		t.Errorf("the daemon never logged a limiter_error: it did not notice the outage")
	}

	// Postfix never timed out on the milter nor fell back to its default.
	var trouble []string
	for _, line := range strings.Split(pf.Log(), "\n") {
		if e2eFaultPostfixTrouble.MatchString(line) {
			trouble = append(trouble, line)
		}
	}
	if len(trouble) > 0 {
		t.Errorf("Postfix logged %d milter problem(s), e.g.:\n%s", len(trouble), strings.Join(trouble[:min(len(trouble), 10)], "\n"))
	}

	// Every accepted message reaches the next hop: nothing was lost.
	accepted += bulkAccepted + len(warm.results)
	sinkStart := time.Now()
	if got := len(sink.WaitForMessages(t, accepted, 2*time.Minute)); got != accepted {
		t.Errorf("the next hop received %d messages, want the %d Postfix accepted", got, accepted)
	}
	t.Logf("all %d accepted messages reached the next hop (%v after the load ended)", accepted, time.Since(sinkStart).Round(time.Millisecond))

	// The daemon's resources return near the baseline once idle.
	after := e2eFaultSettle(t, pid, milterPort, rs.Port, &baseline)
	t.Logf("after the load: %s (baseline %s)", after, baseline)
	if limit := baseline.rssKiB + e2eFaultRSSSlackKiB; after.rssKiB > limit {
		t.Errorf("RSS %d KiB after the load, want at most %d KiB (baseline %d KiB + %d KiB)", after.rssKiB, limit, baseline.rssKiB, e2eFaultRSSSlackKiB)
	}
	// Goroutines come back too: a session, a Redis call or a reconnection
	// that leaked one would keep it. A few may differ with the Redis pool's
	// size after the outage.
	var goroutines float64
	redistest.WaitFor(t, 30*time.Second, "the daemon's goroutines back to the baseline", func() bool {
		goroutines, err = perftest.Gauge(context.Background(), goroutinesURL, "go_goroutines")
		return err == nil && goroutines <= baseGoroutines+e2eFaultGoroutineSlack
	})
	t.Logf("goroutines: %v at the baseline, %v after the load", baseGoroutines, goroutines)
	if t.Failed() {
		t.Logf("postfix log tail:\n%s", e2eFaultTail(pf.Log(), 40))
	}
}

// e2eFaultRecovery bounds how long after Redis returns the fail mode may
// still decide: the breaker lets a probe through once a second, and
// go-redis, after failed dials, tries a new one once a second.
const e2eFaultRecovery = 5 * time.Second

// e2eFaultRSSSlackKiB is how far the idle RSS may end above the idle
// baseline: Go keeps freed heap for a while, so the RSS does not fall back
// to the byte; a leak of a few KiB per message over thousands of messages
// goes past it.
const e2eFaultRSSSlackKiB = 8 << 10

// e2eFaultGoroutineSlack is how many goroutines above the idle baseline
// the daemon may keep after the outage (none are expected).
const e2eFaultGoroutineSlack = 3

// e2eFaultLimitsBack sends messages as the bulk account (limit 1/1h) until
// one is deferred with ACCOUNT_MSG_RATE; it returns how long after its
// call that took and how many it sent were accepted. Before the breaker closes, the fail mode decides (the
// message is accepted or deferred as RATE_STORE_UNAVAILABLE).
func e2eFaultLimitsBack(t *testing.T, addr string) (took time.Duration, accepted int) {
	t.Helper()
	start := time.Now()
	c, err := e2eFaultDial(addr, "bulk", "198.51.100.7")
	if err != nil {
		t.Fatalf("bulk account: %v", err)
	}
	defer c.close()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var replies []string
	for i := 0; ; i++ {
		code, text, err := c.send("news@bulk.example", "x@example.org", e2eFaultMessage("news@bulk.example", 100000+i))
		if err != nil {
			t.Fatalf("bulk account, message %d: %v", i, err)
		}
		replies = append(replies, fmt.Sprintf("+%v %d %s", time.Since(start).Round(time.Millisecond), code, text))
		if code == 250 {
			accepted++
		}
		if code == 451 && strings.Contains(text, "ACCOUNT_MSG_RATE 1/1h") {
			t.Logf("bulk account after Redis returned:\n%s", strings.Join(replies, "\n"))
			return time.Since(start), accepted
		}
		if time.Since(start) > e2eFaultRecovery {
			t.Fatalf("no 451 ACCOUNT_MSG_RATE for the bulk account within %v after Redis returned; replies:\n%s", e2eFaultRecovery, strings.Join(replies, "\n"))
		}
		<-tick.C
	}
}

// e2eFaultWait waits for done (or fails when also closes first).
func e2eFaultWait(t *testing.T, done, also <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-done:
	case <-also:
		select {
		case <-done:
		default:
			t.Fatalf("the load ended before %s", what)
		}
	case <-time.After(e2eFaultLoadTimeout):
		t.Fatalf("timed out after %v waiting for %s", e2eFaultLoadTimeout, what)
	}
}

// e2eFaultPoolSize is the most Redis connections the daemon may keep: the
// store's pool (ratelimit.RedisPoolSize, a hard ceiling), plus the pub/sub
// connection of the admin-change subscription, which lives outside the
// pool. (Before the ceiling, go-redis opened connections beyond its pool
// under load and ran pipelines on a second pool: 22 were seen.)
var e2eFaultPoolSize = ratelimit.RedisPoolSize() + 1

// e2eFaultSettle waits until the idle daemon has no milter session left
// and its fd count has been stable for half a second; with a baseline, also
// until its other fds are back within two of the baseline's and it keeps
// no more Redis connections than its pool holds. Then it returns the
// figures.
func e2eFaultSettle(t *testing.T, pid, milterPort, redisPort int, baseline *e2eFaultProc) e2eFaultProc {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	prev := e2eFaultReadProc(t, pid, milterPort, redisPort)
	stable := 0
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		<-tick.C
		cur := e2eFaultReadProc(t, pid, milterPort, redisPort)
		if cur.fds == prev.fds {
			stable++
		} else {
			stable = 0
		}
		prev = cur
		back := baseline == nil || (cur.other() <= baseline.other()+2 && cur.redisConns <= e2eFaultPoolSize)
		if stable >= 5 && cur.sessions == 0 && back {
			return cur
		}
		if time.Now().After(deadline) {
			if baseline != nil {
				t.Fatalf("the daemon's fds did not return near the baseline within 30s (at most %d Redis connections, other fds within 2): now %s, baseline %s",
					e2eFaultPoolSize, cur, *baseline)
			}
			t.Fatalf("the daemon did not settle within 30s: %s", cur)
		}
	}
}

// countDecisions counts the decision log lines that match.
func (p *proc) countDecisions(match func(map[string]any) bool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.lines {
		if l["msg"] == "decision" && match(l) {
			n++
		}
	}
	return n
}

// decisionMillis returns the median, 99th percentile and maximum of the
// end-of-message decisions' "ms" field (from MAIL FROM to the decision, so
// it includes the time the MTA took to pass the message on).
func (p *proc) decisionMillis() (p50, p99, worst float64) {
	p.mu.Lock()
	var ms []float64
	for _, l := range p.lines {
		if v, ok := l["ms"].(float64); ok && l["msg"] == "decision" && l["stage"] == "eom" {
			ms = append(ms, v)
		}
	}
	p.mu.Unlock()
	if len(ms) == 0 {
		return 0, 0, 0
	}
	slices.Sort(ms)
	return ms[len(ms)/2], ms[len(ms)*99/100], ms[len(ms)-1]
}

func e2eFaultTail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// e2eFaultSlowProxy is a TCP proxy on loopback that, while its delay is
// set, holds every chunk the client sends for that long before passing it
// on: a Redis that answers slowly.
type e2eFaultSlowProxy struct {
	ln     net.Listener
	target string
	delay  atomic.Int64 // nanoseconds
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
}

func e2eFaultStartSlowProxy(t *testing.T, target string) *e2eFaultSlowProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("slow proxy: %v", err)
	}
	p := &e2eFaultSlowProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *e2eFaultSlowProxy) addr() string { return p.ln.Addr().String() }

func (p *e2eFaultSlowProxy) setDelay(d time.Duration) { p.delay.Store(int64(d)) }

func (p *e2eFaultSlowProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *e2eFaultSlowProxy) serve() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		if !p.track(client) || !p.track(server) {
			client.Close()
			server.Close()
			return
		}
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			io.Copy(client, server)
			client.Close()
		}()
		go func() {
			defer p.wg.Done()
			defer server.Close()
			buf := make([]byte, 32<<10)
			for {
				n, err := client.Read(buf)
				if n > 0 {
					if d := time.Duration(p.delay.Load()); d > 0 {
						time.Sleep(d) // the fault: a slow Redis
					}
					if _, werr := server.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

func (p *e2eFaultSlowProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
}

// e2eFaultMilterMessage sends one message for login straight to the daemon
// with go-milter's client and returns the final action and how long the
// daemon took from MAIL to the end-of-message reply.
func e2eFaultMilterMessage(t *testing.T, addr, login, from string) (*gomilter.Action, time.Duration) {
	t.Helper()
	s := testenv.MilterSession(t, addr, 10*time.Second)
	defer s.Close()
	act(t, "conn")(s.Conn("client.example.net", gomilter.FamilyInet, 40000, "192.0.2.10"))
	if err := s.Macros(gomilter.CodeMail, "{auth_authen}", login, "{auth_type}", "PLAIN"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if a := act(t, "mail")(s.Mail(from, nil)); a.Code != gomilter.ActContinue {
		t.Fatalf("mail: %q %d %s", a.Code, a.SMTPCode, a.SMTPText)
	}
	act(t, "rcpt")(s.Rcpt("r@example.org", nil))
	act(t, "header")(s.HeaderField("From", from))
	act(t, "eoh")(s.HeaderEnd())
	_, a, err := s.BodyReadFrom(strings.NewReader("hello\r\n"))
	if err != nil {
		t.Fatalf("end of message: %v", err)
	}
	return a, time.Since(start)
}

// TestE2EFaultRedisSlow puts a delaying proxy between the daemon and Redis:
// the Redis deadline holds, the breaker opens and closes again.
func TestE2EFaultRedisSlow(t *testing.T) {
	rs := redistest.Start(t)
	proxy := e2eFaultStartSlowProxy(t, rs.Addr())
	p := startDaemon(t, "--config", writeConfig(t, t.TempDir(), e2eFaultConfig(proxy.addr(), "accept")))
	addr := milterAddr(t, p)

	seq := 0
	send := func(login, domain string) (*gomilter.Action, time.Duration, map[string]any) {
		t.Helper()
		seq++
		from := fmt.Sprintf("slow%d@%s", seq, domain)
		a, took := e2eFaultMilterMessage(t, addr, login, from)
		line := p.waitDecision(t, from, func(l map[string]any) bool { return l["mail_from"] == from && l["stage"] == "eom" })
		return a, took, line
	}
	limiterError := func(l map[string]any) string { s, _ := l["limiter_error"].(string); return s }

	// Redis answers: no limiter error.
	if a, _, line := send("load", "load.example"); a.Code != gomilter.ActAccept || limiterError(line) != "" {
		t.Fatalf("with a prompt Redis: %q, decision %v", a.Code, line)
	}

	// Slow Redis: a delay ten times the timeout. Every decision still comes
	// within the timeout plus a margin, the fail mode (accept) decides, and
	// after a few failures the breaker opens: calls fail at once.
	const delay = 2 * time.Second
	const bound = e2eFaultRedisTO + 800*time.Millisecond
	proxy.setDelay(delay)
	var timedOut, failFast int
	for i := 0; i < 6; i++ {
		a, took, line := send("load", "load.example")
		ms, _ := line["ms"].(float64)
		le := limiterError(line)
		t.Logf("slow Redis, message %d: %q after %v (decision log ms %.1f), limiter_error %q", i, a.Code, took.Round(time.Millisecond), ms, le)
		if a.Code != gomilter.ActAccept || le == "" {
			t.Errorf("message %d with a slow Redis: %q, limiter_error %q; want accept by the fail mode", i, a.Code, le)
		}
		if took > bound || time.Duration(ms*float64(time.Millisecond)) > bound {
			t.Errorf("message %d took %v (log: %.1f ms) with redis.timeout %v, want at most %v: the Redis deadline did not hold", i, took, ms, e2eFaultRedisTO, bound)
		}
		switch {
		case strings.Contains(le, "circuit breaker open"):
			failFast++
		case le != "":
			timedOut++
		}
	}
	if timedOut < 1 || failFast < 1 {
		t.Errorf("with a slow Redis: %d calls timed out and %d failed fast; want the breaker to open after timeouts (3 by default)", timedOut, failFast)
	}

	// Redis prompt again: the breaker's probe succeeds and it closes, with
	// no daemon restart; then the store decides again (a limit applies).
	proxy.setDelay(0)
	start := time.Now()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		_, _, line := send("load", "load.example")
		if limiterError(line) == "" {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("the breaker did not close within 10s after Redis became prompt again; last decision %v", line)
		}
		<-tick.C
	}
	t.Logf("breaker closed %v after Redis became prompt again", time.Since(start).Round(time.Millisecond))
	if a, _, line := send("bulk", "bulk.example"); a.Code != gomilter.ActAccept || limiterError(line) != "" {
		t.Fatalf("bulk's first message: %q, decision %v", a.Code, line)
	}
	a, _, line := send("bulk", "bulk.example")
	if a.Code != gomilter.ActReplyCode || a.SMTPCode != 451 || !strings.Contains(a.SMTPText, "ACCOUNT_MSG_RATE 1/1h") {
		t.Errorf("bulk's second message after the breaker closed: %q %d %s, want 451 ACCOUNT_MSG_RATE; decision %v", a.Code, a.SMTPCode, a.SMTPText, line)
	}
}

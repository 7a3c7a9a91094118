package postfixbench

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/testutil/redistest"
	"github.com/abusemilter/abusemilter/internal/testutil/testenv"
)

var (
	run      = flag.Bool("postfix.bench", false, "run the Postfix throughput measurement")
	messages = flag.Int("postfix.messages", 2000, "messages smtp-source sends per run")
	sessions = flag.Int("postfix.sessions", 20, "parallel SMTP sessions of smtp-source")
	rounds   = flag.Int("postfix.rounds", 1, "rounds of the four set-ups, interleaved")
	size     = flag.Int("postfix.size", 4000, "message size in bytes (smtp-source -l)")
	rcpts    = flag.Int("postfix.rcpts", 1, "recipients per message (smtp-source -r)")
	jsonOut  = flag.String("postfix.json", "", "also write the figures as JSON to this file")
)

// benchConfig is abusemilter's config for the runs: every rule on, DNS off
// (nothing leaves the machine), mail from 127.0.0.0/8 belongs to the
// account "bench", which owns bench.example (smtp-source's sender), and a
// production-shaped set of limits (messages over two windows, recipients,
// new recipients per day) too high to be reached.
const benchConfig = `mode: enforce
listen: %q
log:
  format: json
  level: info
dns:
  enabled: false
session:
  max_sessions: 4096
identity:
  login_is_address: false
  accounts:
    bench:
      send_as: [bench.example]
  networks:
    - {network: 127.0.0.0/8, account: bench}
limits:
  max_recipients_per_message: 100
  account_messages: ["10000000/1h", "100000000/1d"]
  account_recipients: ["50000000/1h"]
  account_new_recipients: ["50000000/1d"]
strikes:
  threshold: 10000000
  window: 1h
%s`

// setup is one way of running Postfix: its milter, started before it.
type setup struct {
	name  string
	start func(t *testing.T) (string, *os.Process) // smtpd_milters ("" for none) and the milter's process
}

func TestPostfixThroughput(t *testing.T) {
	if !*run {
		t.Skip("a measurement: run with -postfix.bench (make bench-postfix)")
	}
	source := testenv.RequireTool(t, "smtp-source")
	bin := buildBinaries(t)
	setups := []setup{
		{"no milter", func(*testing.T) (string, *os.Process) { return "", nil }},
		{"no-op milter (replies to every step)", func(t *testing.T) (string, *os.Process) { return serveNoOp(t, bin) }},
		{"abusemilter, embedded store", func(t *testing.T) (string, *os.Process) { return startAbusemilter(t, bin, "") }},
		{"abusemilter, Redis store", func(t *testing.T) (string, *os.Process) {
			srv := redistest.Start(t)
			return startAbusemilter(t, bin, "redis:\n  url: \"redis://"+srv.Addr()+"\"\n  timeout: 1s\n")
		}},
	}
	rates := make(map[string][]float64)
	cpu := make(map[string][]float64) // the milter process's CPU ms per message
	for round := 1; round <= *rounds; round++ {
		for _, s := range setups {
			t.Run(fmt.Sprintf("%d/%s", round, s.name), func(t *testing.T) {
				milter, proc := s.start(t)
				sink := startSink(t)
				pf := testenv.StartPostfix(t, testenv.PostfixOptions{
					SMTPDMilter: milter, RelayTo: sink,
					MilterCommandTimeout: 30 * time.Second, MilterContentTimeout: 60 * time.Second,
					ExtraMainCF: map[string]string{
						// smtp-source's sessions all come from 127.0.0.1.
						"smtpd_client_connection_count_limit": "0",
						"smtpd_client_connection_rate_limit":  "0",
					},
				})
				c0 := cpuSeconds(proc)
				rate := sendAll(t, source, pf)
				rates[s.name] = append(rates[s.name], rate)
				checkAccepted(t, pf)
				ms := (cpuSeconds(proc) - c0) * 1000 / float64(*messages)
				cpu[s.name] = append(cpu[s.name], ms)
				t.Logf("%s: %.0f messages/s, milter CPU %.3f ms per message", s.name, rate, ms)
			})
		}
	}
	report(t, setups, rates, cpu)
}

// cpuSeconds is the user and system CPU time p has used (0 for nil), from
// /proc/PID/stat.
func cpuSeconds(p *os.Process) float64 {
	if p == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid))
	if err != nil {
		return 0
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	return (utime + stime) / 100 // USER_HZ
}

// sendAll runs smtp-source against pf and returns messages per second.
func sendAll(t *testing.T, source string, pf *testenv.Postfix) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	args := []string{"-s", strconv.Itoa(*sessions), "-m", strconv.Itoa(*messages), "-l", strconv.Itoa(*size),
		"-r", strconv.Itoa(*rcpts), "-f", "sender@bench.example", "-t", "rcpt@dest.example", "-M", "client.bench.example", pf.Addr()}
	cmd := exec.CommandContext(ctx, source, args...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("smtp-source %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return float64(*messages) / elapsed.Seconds()
}

// checkAccepted makes sure Postfix accepted every message (a milter that
// refused or failed would make the figure meaningless): the log holds one
// "message-id=" cleanup line per accepted message and no milter-reject.
func checkAccepted(t *testing.T, pf *testenv.Postfix) {
	t.Helper()
	want := *messages
	re := regexp.MustCompile(`cleanup\[\d+\]: [0-9A-F]+: message-id=`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		log := pf.Log()
		n := len(re.FindAllStringIndex(log, -1))
		if strings.Contains(log, "milter-reject") || strings.Contains(log, "milter-discard") {
			t.Fatalf("the milter refused a message:\n%s", firstLines(log, "milter-", 5))
		}
		if n >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("postfix accepted %d of %d messages; log:\n%s", n, want, tail(log, 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func firstLines(s, sub string, n int) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
			if len(out) == n {
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// report prints messages/s per set-up and the ratios of the runs.
func report(t *testing.T, setups []setup, rates, cpu map[string][]float64) {
	var b strings.Builder
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(&b, "\nPostfix throughput: smtp-source, %d messages of %d bytes, %d recipient(s), %d sessions; %d round(s); load average %s\n",
		*messages, *size, *rcpts, *sessions, *rounds, strings.Join(strings.Fields(string(load))[:3], " "))
	none, noop := setups[0].name, setups[1].name
	fmt.Fprintf(&b, "%-40s %s\n", "set-up", "messages/s per round (ratio to no milter; to the no-op milter)")
	out := map[string]any{"messages": *messages, "size": *size, "sessions": *sessions, "rounds": *rounds, "rates": rates, "milter_cpu_ms": cpu}
	for _, s := range setups {
		fmt.Fprintf(&b, "%-40s", s.name)
		for i, r := range rates[s.name] {
			fmt.Fprintf(&b, " %6.0f (%.2f; %.2f)", r, r/rates[none][i], r/rates[noop][i])
		}
		if s.name != none {
			b.WriteString("  milter CPU ms/message:")
			for _, c := range cpu[s.name] {
				fmt.Fprintf(&b, " %.3f", c)
			}
		}
		b.WriteString("\n")
	}
	fmt.Println(b.String())
	if *jsonOut != "" {
		data, _ := json.MarshalIndent(out, "", "  ")
		if err := os.WriteFile(*jsonOut, data, 0o644); err != nil {
			t.Error(err)
		}
	}
}

// buildBinaries builds abusemilter and milterload into a temporary
// directory.
func buildBinaries(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	root := moduleRoot(t)
	for _, c := range []string{"abusemilter", "milterload"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, c), "./cmd/"+c)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", c, err, out)
		}
	}
	return dir
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// serveNoOp runs milterload's no-op milter in a process of its own, as a
// milter runs, and returns its Postfix address.
func serveNoOp(t *testing.T, bin string) (string, *os.Process) {
	t.Helper()
	port := testenv.FreePort(t)
	addr := "inet:127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(filepath.Join(bin, "milterload"), "--serve-noop", addr)
	startProcess(t, cmd, "serving the no-op milter")
	return addr, cmd.Process
}

// startAbusemilter runs the daemon with benchConfig (plus extra) and
// returns its Postfix address once it is ready.
func startAbusemilter(t *testing.T, bin, extra string) (string, *os.Process) {
	t.Helper()
	port := testenv.FreePort(t)
	addr := "inet:127.0.0.1:" + strconv.Itoa(port)
	cfg := filepath.Join(t.TempDir(), "abusemilter.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(benchConfig, addr, extra)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(bin, "abusemilter"), "--config", cfg)
	startProcess(t, cmd, "abusemilter ready")
	return addr, cmd.Process
}

// startProcess starts cmd, waits until a line of its standard error holds
// ready, keeps reading (and discarding) the rest, and stops it at the end
// of the test.
func startProcess(t *testing.T, cmd *exec.Cmd, ready string) {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	var once sync.Once
	up := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if strings.Contains(sc.Text(), ready) {
				once.Do(func() { close(up) })
			}
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	select {
	case <-up:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: no %q line within 30s", cmd.Path, ready)
	}
}

// startSink starts Postfix's smtp-sink (a C program, cheaper than a Go
// sink on a shared 2-core machine) on a free port, or testenv's sink when
// smtp-sink is missing, and returns its address.
func startSink(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("smtp-sink")
	if err != nil {
		return testenv.StartSink(t).Addr()
	}
	port := testenv.FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(path, "-u", "nobody", addr, "256")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start smtp-sink: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("smtp-sink on %s does not answer: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

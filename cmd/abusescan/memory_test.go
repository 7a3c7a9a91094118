package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// peakRSSRunner, set in the environment, makes the test binary a small
// runner instead (TestMain): it runs the command line it is given, with
// its own standard streams, and prints the child's peak RSS in bytes on
// the last line of standard error.
//
// Why not take the child's rusage directly: Go starts children with
// vfork (CLONE_VM), and Linux carries the memory's high-water mark across
// exec into the child's maxrss, so a child of the test binary reported at
// least the test binary's own peak (110 to 140 MB under -race while the
// other tests ran, against 45 MB that abusescan used). This runner is a
// fresh process whose high-water mark is small, so its child's maxrss is
// the child's own.
const peakRSSRunner = "ABUSESCAN_TEST_PEAK_RSS_RUNNER"

func TestMain(m *testing.M) {
	if os.Getenv(peakRSSRunner) == "" {
		os.Exit(m.Run())
	}
	cmd := exec.Command(os.Args[1], os.Args[2:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	if cmd.ProcessState == nil {
		fmt.Fprintf(os.Stderr, "peak RSS runner: %v\n", err)
		os.Exit(2)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	fmt.Fprintf(os.Stderr, "\npeak-rss %d\n", ru.Maxrss<<10) // kilobytes on Linux
	os.Exit(cmd.ProcessState.ExitCode())
}

// runPeakRSS runs name with args through the peak RSS runner and returns
// the child's peak RSS in bytes and its standard error without the
// runner's line.
func runPeakRSS(t *testing.T, stdout *os.File, name string, args ...string) (int64, string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, append([]string{name}, args...)...)
	cmd.Env = append(os.Environ(), peakRSSRunner+"=1")
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = stdout, &stderr
	runErr := cmd.Run()
	text := stderr.String()
	i := strings.LastIndex(text, "\npeak-rss ")
	if i < 0 {
		t.Fatalf("%s: %v, and no peak-rss line:\n%s", name, runErr, text)
	}
	peak, err := strconv.ParseInt(strings.TrimSpace(text[i+len("\npeak-rss "):]), 10, 64)
	if err != nil {
		t.Fatalf("peak-rss line %q: %v", text[i:], err)
	}
	if runErr != nil {
		t.Fatalf("%s: %v\n%s", name, runErr, text[:i])
	}
	return peak, text[:i]
}

// writeBigMbox writes an mbox of about size bytes: messages of about 4 KB
// from a few dozen accounts' senders, Dates one minute apart but written
// out of order, so that the rate replay has to sort them.
func writeBigMbox(t *testing.T, path string, size int64) int {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	body := strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\n", 52)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var written int64
	n := 0
	for written < size {
		// Dates in blocks of 1,000 messages written newest first.
		block, in := n/1000, n%1000
		at := base.Add(time.Duration(block*1000+999-in) * time.Minute)
		sender := fmt.Sprintf("user%d@example.com", n%40)
		if n%7 == 0 {
			sender = fmt.Sprintf("someone%d@elsewhere%d.example", n%13, n%5)
		}
		c, _ := fmt.Fprintf(w, "From %s %s\nFrom: User <%s>\nTo: rcpt%d@example.org, other%d@example.net\nSubject: message %d\n"+
			"Date: %s\nMessage-ID: <%d.replay@example.com>\n\n%s\n",
			sender, at.Format("Mon Jan _2 15:04:05 2006"), sender, n%500, n%300, n, at.Format(time.RFC1123Z), n, body)
		written += int64(c)
		n++
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestReplayRatesMemory runs the built abusescan with --replay-rates over
// a generated 200 MB mbox and checks its peak resident memory (the
// kernel's maxrss of the process, what /usr/bin/time -v reports as
// "Maximum resident set size"): the replay keeps its records on disk, so
// memory follows the accounts and rate windows, not the messages.
func TestReplayRatesMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("generates and scans a 200 MB mailbox")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "abusescan")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	mbox := filepath.Join(dir, "big.mbox")
	n := writeBigMbox(t, mbox, 200<<20)
	out, err := os.Create(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	start := time.Now()
	peak, _ := runPeakRSS(t, out, bin, "--config", mb("abusescan.yaml"), "--replay-rates", "--account-from-sender",
		"--format", "json", "--fail-on", "never", "--no-progress", mbox)
	fi, _ := out.Stat()
	t.Logf("%d messages, %d MB mbox, %s, peak RSS %.1f MB, report %d MB", n, 200, time.Since(start).Round(time.Second), float64(peak)/(1<<20), fi.Size()>>20)
	if peak > 64<<20 {
		t.Errorf("peak RSS %.1f MB over a 200 MB mailbox with --replay-rates, want under 64 MB", float64(peak)/(1<<20))
	}
}

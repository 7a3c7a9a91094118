package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

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
	start := time.Now()
	cmd := exec.Command(bin, "--config", mb("abusescan.yaml"), "--replay-rates", "--account-from-sender",
		"--format", "json", "--fail-on", "never", "--no-progress", mbox)
	out, err := os.Create(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("abusescan: %v\n%s", err, stderr.String())
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	peak := ru.Maxrss << 10 // kilobytes on Linux
	fi, _ := out.Stat()
	t.Logf("%d messages, %d MB mbox, %s, peak RSS %.1f MB, report %d MB", n, 200, time.Since(start).Round(time.Second), float64(peak)/(1<<20), fi.Size()>>20)
	if peak > 64<<20 {
		t.Errorf("peak RSS %.1f MB over a 200 MB mailbox with --replay-rates, want under 64 MB", float64(peak)/(1<<20))
	}
}

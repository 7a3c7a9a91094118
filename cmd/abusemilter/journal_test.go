package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/testutil/testenv"
)

// TestBinaryJournalPriorities runs the built daemon as systemd would with
// StandardError=journal: JOURNAL_STREAM names its standard error (here a
// file standing in for the journal's stream). Every line then starts with
// its syslog priority: <6> for the ready line and decisions, <4> for a
// refused reload, so that journalctl -p warning shows it. Without the
// variable the same lines carry no prefix (the other binary tests).
func TestBinaryJournalPriorities(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, daemonConfig)
	stream, err := os.Create(filepath.Join(dir, "journal-stream"))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	fi, err := stream.Stat()
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	cmd := exec.Command(binary(t), "--config", cfg, "--log-format", "json")
	cmd.Stderr = stream
	cmd.Env = append(os.Environ(), "JOURNAL_STREAM="+strconv.FormatUint(uint64(st.Dev), 10)+":"+strconv.FormatUint(st.Ino, 10))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	read := func() string { b, _ := os.ReadFile(stream.Name()); return string(b) }
	testenv.WaitFor(t, 10*time.Second, "the ready line", func() bool { return strings.Contains(read(), "abusemilter ready") })

	writeConfig(t, dir, "mode: loud\n")
	cmd.Process.Signal(syscall.SIGHUP)
	testenv.WaitFor(t, 10*time.Second, "the refused reload", func() bool { return strings.Contains(read(), "config reload failed") })
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()

	lines := strings.Split(strings.TrimSpace(read()), "\n")
	want := map[string]string{"abusemilter ready": "<6>", "config reload failed, keeping the running config": "<4>", `"msg":"stopped"`: "<6>"}
	for _, l := range lines {
		if !strings.HasPrefix(l, "<") {
			t.Errorf("line without a priority prefix: %q", l)
		}
		for text, prefix := range want {
			if strings.Contains(l, text) {
				if !strings.HasPrefix(l, prefix+"{") {
					t.Errorf("%q: want the prefix %s, got %q", text, prefix, l)
				}
				delete(want, text)
			}
		}
	}
	if len(want) > 0 {
		t.Errorf("lines not seen: %v in\n%s", want, read())
	}
}

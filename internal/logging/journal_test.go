package logging

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"go.uber.org/zap"
)

// journalFile is a file standing in for the journal's stream, with
// JOURNAL_STREAM naming it when named is true.
func journalFile(t *testing.T, named bool) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "journal"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if named {
		t.Setenv(JournalStreamEnv, strconv.FormatUint(uint64(st.Dev), 10)+":"+strconv.FormatUint(st.Ino, 10))
	} else {
		t.Setenv(JournalStreamEnv, "")
	}
	return f
}

func logEveryLevel(t *testing.T, f *os.File, format string) []string {
	t.Helper()
	lg, _, err := New(Options{Format: format, Level: "debug", Output: f})
	if err != nil {
		t.Fatal(err)
	}
	lg.Debug("debug line")
	lg.Info("decision", zap.String("action", "reject"))
	lg.Warn("account locked", zap.String("account", "alice"))
	lg.Warn("rate store fail mode entered")
	lg.Warn("config reload failed, keeping the running config")
	lg.Error("milter server stopped")
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// TestJournalPriorityPrefixes: with JOURNAL_STREAM naming the output, every
// line starts with its syslog priority, which journald turns into
// PRIORITY= (journalctl -p warning then shows locks, the fail mode and a
// refused reload); without it, or when the output is another file, no line
// has a prefix.
func TestJournalPriorityPrefixes(t *testing.T) {
	want := []string{"<7>", "<6>", "<4>", "<4>", "<4>", "<3>"}
	for _, format := range []string{"json", "console"} {
		t.Run(format, func(t *testing.T) {
			lines := logEveryLevel(t, journalFile(t, true), format)
			if len(lines) != len(want) {
				t.Fatalf("%d lines, want %d: %q", len(lines), len(want), lines)
			}
			for i, l := range lines {
				if !strings.HasPrefix(l, want[i]) || strings.HasPrefix(l[len(want[i]):], "<") {
					t.Errorf("line %d = %q, want it to start with one %s", i, l, want[i])
				}
			}
			if format == "json" && !strings.HasPrefix(lines[1], `<6>{"level":"info"`) {
				t.Errorf("the JSON object must follow the prefix at once: %q", lines[1])
			}
		})
	}
	t.Run("without JOURNAL_STREAM", func(t *testing.T) {
		for _, l := range logEveryLevel(t, journalFile(t, false), "json") {
			if strings.HasPrefix(l, "<") {
				t.Errorf("prefix without JOURNAL_STREAM: %q", l)
			}
		}
	})
	t.Run("JOURNAL_STREAM names another stream", func(t *testing.T) {
		journalFile(t, true) // sets the variable for one file...
		other, err := os.Create(filepath.Join(t.TempDir(), "other"))
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		for _, l := range logEveryLevel(t, other, "json") { // ...and logs to another
			if strings.HasPrefix(l, "<") {
				t.Errorf("prefix on a stream that is not the journal's: %q", l)
			}
		}
	})
	t.Run("malformed JOURNAL_STREAM", func(t *testing.T) {
		f := journalFile(t, false)
		t.Setenv(JournalStreamEnv, "not-a-device")
		for _, l := range logEveryLevel(t, f, "json") {
			if strings.HasPrefix(l, "<") {
				t.Errorf("prefix with a malformed JOURNAL_STREAM: %q", l)
			}
		}
	})
}

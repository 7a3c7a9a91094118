package logging

import (
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
)

// syncBuffer is a goroutine-safe bytes buffer (the flush timer writes from
// its own goroutine).
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// With a flush interval, info lines wait in memory until Sync (here the
// interval is an hour, so only Sync can write them); a warning is written
// at once, with what was held before it, in order.
func TestBufferedLinesWaitForSync(t *testing.T) {
	var out syncBuffer
	logger, _, err := New(Options{Format: "json", Output: &out, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	logger.Info("decision", zap.String("n", "1"))
	logger.Info("decision", zap.String("n", "2"))
	if got := out.String(); got != "" {
		t.Fatalf("info lines written before a flush: %q", got)
	}
	logger.Warn("account locked")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], `"n":"1"`) || !strings.Contains(lines[2], "account locked") {
		t.Fatalf("after a warning: %q, want the two held lines then the warning", lines)
	}
	logger.Info("decision", zap.String("n", "3"))
	if n := strings.Count(out.String(), "\n"); n != 3 {
		t.Fatalf("%d lines before Sync, want 3", n)
	}
	if err := logger.Sync(); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "\n"); n != 4 || !strings.Contains(out.String(), `"n":"3"`) {
		t.Fatalf("after Sync: %q, want all 4 lines", out.String())
	}
}

// Without a flush interval every line is written at once, as before.
func TestUnbufferedByDefault(t *testing.T) {
	var out syncBuffer
	logger, _, err := New(Options{Format: "json", Output: &out})
	if err != nil {
		t.Fatal(err)
	}
	logger.Info("decision")
	if !strings.Contains(out.String(), "decision") {
		t.Fatalf("line not written at once: %q", out.String())
	}
}

// With Buffered, only those messages wait; another info line is written at
// once, after the lines held before it.
func TestOnlyBufferedMessagesWait(t *testing.T) {
	var out syncBuffer
	logger, _, err := New(Options{Format: "json", Output: &out, FlushInterval: time.Hour, Buffered: []string{"decision"}})
	if err != nil {
		t.Fatal(err)
	}
	logger.Info("decision")
	if out.String() != "" {
		t.Fatalf("a decision line was written before a flush: %q", out.String())
	}
	logger.Info("abusemilter ready")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "decision") || !strings.Contains(lines[1], "ready") {
		t.Fatalf("after a lifecycle line: %q, want the held decision, then it", lines)
	}
}

// A flush to an output whose Sync fails (standard error on a pipe: fsync
// gives EINVAL) reports no error: only writes count.
func TestFlushIgnoresOutputSync(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	logger, _, err := New(Options{Format: "json", Output: w, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	logger.Info("decision")
	if err := logger.Sync(); err != nil {
		t.Fatalf("Sync over a pipe: %v", err)
	}
	buf := make([]byte, 4096)
	n, err := r.Read(buf)
	if err != nil || !strings.Contains(string(buf[:n]), "decision") {
		t.Fatalf("read %q, %v; want the decision line", buf[:n], err)
	}
}

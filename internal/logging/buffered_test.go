package logging

import (
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

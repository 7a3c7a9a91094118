package testenv

import (
	"bytes"
	"sync"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"
)

// MilterSession opens a negotiated go-milter client session to a milter at
// addr ("HOST:PORT" over TCP), offering the header actions the MTA offers
// abusemilter, with timeout for every read and write. The session is closed
// when the test ends; closing it earlier is fine.
func MilterSession(t testing.TB, addr string, timeout time.Duration) *gomilter.ClientSession {
	t.Helper()
	c := gomilter.NewClientWithOptions("tcp", addr, gomilter.ClientOptions{
		ActionMask:   gomilter.OptAddHeader | gomilter.OptChangeHeader,
		ReadTimeout:  timeout,
		WriteTimeout: timeout,
	})
	s, err := c.Session()
	if err != nil {
		t.Fatalf("milter session with %s: %v", addr, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers, for capturing a
// logger's or a process's output while the test reads it.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

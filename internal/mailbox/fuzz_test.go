package mailbox

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/abusemilter/abusemilter/scoring"
)

// FuzzMbox reads arbitrary bytes as a stream: whatever they are, reading
// must not panic, offsets must rise and point at From_ lines, and what is
// kept must respect the caps.
func FuzzMbox(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		opts := Options{BodyCap: 64, MaxHeaderBytes: 256}
		last := int64(-1)
		gz := len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b
		for e := range ReadStream(context.Background(), "fuzz", bytes.NewReader(data), opts) {
			if (e.Message == nil) == (e.Problem == nil) {
				t.Fatalf("entry must hold exactly one of message and problem")
			}
			m := e.Message
			if m == nil {
				if e.Problem.Error() == "" {
					t.Fatal("empty problem text")
				}
				continue
			}
			if m.Format == Mbox {
				if m.Offset <= last {
					t.Fatalf("offset %d after %d", m.Offset, last)
				}
				if !gz && (m.Offset >= int64(len(data)) || !bytes.HasPrefix(data[m.Offset:], fromPrefix)) {
					t.Fatalf("offset %d does not point at a From_ line", m.Offset)
				}
				last = m.Offset
			}
			// The header block may overshoot the cap by one line at most.
			if int64(len(m.Data)) > int64(opts.MaxHeaderBytes)+readBufSize+opts.BodyCap {
				t.Fatalf("kept %d bytes", len(m.Data))
			}
			if pm, err := scoring.ParseBytes(m.Data, opts.BodyCap); err == nil {
				if int64(len(pm.Body)) > opts.BodyCap || pm.BodySize < int64(len(pm.Body)) {
					t.Fatalf("body %d bytes, size %d", len(pm.Body), pm.BodySize)
				}
			}
		}
	})
}

// FuzzMaildir puts arbitrary bytes in a Maildir's cur/ and new/: each file
// yields at least one entry, entries name only those files, and the
// Maildir's own files are never read.
func FuzzMaildir(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		files := []string{filepath.Join(dir, "cur", "1.M1.host:2,S"), filepath.Join(dir, "new", "2.M2.host")}
		for _, p := range append(files, filepath.Join(dir, "tmp", "3.M3.host"), filepath.Join(dir, "dovecot.index")) {
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		seen := make(map[string]int)
		for e := range Walk(context.Background(), []string{dir}, nil, Options{BodyCap: 64}) {
			src := ""
			if e.Message != nil {
				src = e.Message.Source
			} else {
				src = e.Problem.Source
			}
			seen[src]++
		}
		if len(seen) != 2 || seen[files[0]] == 0 || seen[files[1]] == 0 || seen[files[0]] != seen[files[1]] {
			t.Fatalf("entries by file: %v", seen)
		}
	})
}

package mailbox_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/abusemilter/abusemilter/internal/bench/loadgen"
	"github.com/abusemilter/abusemilter/internal/mailbox"
)

// BenchmarkReadMbox reads an mbox of 1,000 generated messages (about 5 KB,
// 10 to 20 header fields each) with the default options and a 256 KiB body
// cap, as abusescan does: one operation is one message; MB/s is of mbox
// bytes.
func BenchmarkReadMbox(b *testing.B) {
	pool, err := loadgen.Generate(loadgen.GenerateOptions{Count: 1000, Seed: 3})
	if err != nil {
		b.Fatal(err)
	}
	var mbox bytes.Buffer
	for _, m := range pool {
		mbox.WriteString("From " + m.Sender + " Fri Nov 27 06:00:00 2026\n")
		for _, h := range m.Header {
			mbox.WriteString(h.Name + ": " + h.Value + "\n")
		}
		mbox.WriteString("\n")
		for _, line := range strings.Split(strings.ReplaceAll(string(m.Body), "\r\n", "\n"), "\n") {
			if strings.HasPrefix(line, "From ") {
				mbox.WriteString(">")
			}
			mbox.WriteString(line + "\n")
		}
	}
	data := mbox.Bytes()
	opts := mailbox.Options{BodyCap: 256 << 10}
	n := 0
	for e := range mailbox.ReadStream(context.Background(), "bench.mbox", bytes.NewReader(data), opts) {
		if e.Message == nil {
			b.Fatalf("message %d: %v", n, e.Problem)
		}
		n++
	}
	if n != len(pool) {
		b.Fatalf("read %d messages from an mbox of %d", n, len(pool))
	}
	b.SetBytes(int64(len(data) / len(pool)))
	b.ReportAllocs()
	ctx := context.Background()
	read := 0
	for read < b.N {
		for e := range mailbox.ReadStream(ctx, "bench.mbox", bytes.NewReader(data), opts) {
			if e.Problem != nil {
				b.Fatalf("message %d: %v", read, e.Problem)
			}
			if read++; read == b.N {
				break
			}
		}
	}
}

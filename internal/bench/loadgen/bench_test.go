package loadgen

import (
	"path/filepath"
	"testing"

	"github.com/abusemilter/abusemilter/internal/testutil/testenv"
)

// BenchmarkMessage sends one generated message (about 5 KB, 10-20 header
// fields, 1-5 recipients) per operation to the in-process no-op milter, the
// way Run does: "session-per-message" opens a milter connection (OPTNEG,
// CONNECT, HELO) for every message and closes it after; "reused-session"
// keeps one connection, with ABORT between messages as Postfix does.
// Client and server run in the same process, so allocs/op counts both.
func BenchmarkMessage(b *testing.B) {
	pool, err := Generate(GenerateOptions{Count: 100, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	benchMessages(b, pool)
}

// BenchmarkMessageCorpus is BenchmarkMessage with the shared corpus's ham
// as it is ($ABUSEMILTER_CORPUS/spamassassin/ham; skipped without it).
func BenchmarkMessageCorpus(b *testing.B) {
	root := testenv.Corpus(b)
	pool, err := LoadCorpus(filepath.Join(root, "spamassassin", "ham"), CorpusOptions{})
	if err != nil {
		b.Fatal(err)
	}
	benchMessages(b, pool)
}

func benchMessages(b *testing.B, pool Pool) {
	for _, network := range []string{"tcp", "unix"} {
		for _, mode := range []struct {
			name    string
			perConn int
		}{{"session-per-message", 1}, {"reused-session", 1 << 30}} {
			b.Run(network+"/"+mode.name, func(b *testing.B) {
				srv, err := StartNoOp(network)
				if err != nil {
					b.Fatal(err)
				}
				defer srv.Close()
				opts := Options{Target: srv.Target, Source: pool, Count: 1, MessagesPerConn: mode.perConn}
				if err := opts.setDefaults(); err != nil {
					b.Fatal(err)
				}
				w := newWorker(&opts, newRecorder())
				defer w.closeSession()
				b.ReportAllocs()
				var n int64
				for b.Loop() {
					w.send(n, pool.Message(n))
					n++
				}
				b.StopTimer()
				if f := w.rec.failed; f > 0 {
					b.Fatalf("%d messages failed: %v", f, w.rec.errorSamples)
				}
			})
		}
	}
}

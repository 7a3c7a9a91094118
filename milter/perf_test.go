package milter_test

import (
	"context"
	"io"
	"path/filepath"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/abusemilter/abusemilter/internal/bench/loadgen"
	"github.com/abusemilter/abusemilter/internal/bench/perftest"
	"github.com/abusemilter/abusemilter/internal/config"
	"github.com/abusemilter/abusemilter/internal/daemon"
	"github.com/abusemilter/abusemilter/internal/testutil/miltertest"
	"github.com/abusemilter/abusemilter/internal/testutil/testenv"
	"github.com/abusemilter/abusemilter/milter"
)

// BenchmarkLoad measures whole messages as Postfix sends them (generated,
// about 5 KB, 10 to 20 header fields, 1 to 5 recipients, 5% with a From
// domain the account does not own), 32 milter connections in parallel over
// loopback TCP, 10 messages per connection, client and server in this
// process. "abusemilter" is the server with every rule, the embedded rate
// store and 10,000 accounts owning 20,000 domains, logging one JSON line
// per decision (to io.Discard); "noop" is a go-milter server that accepts
// everything, the ceiling. ns/op is wall time per message at full load, so
// the ratio of the two is the share of the ceiling abusemilter reaches.
func BenchmarkLoad(b *testing.B) {
	pool, err := loadgen.Generate(loadgen.GenerateOptions{Count: 5000, Accounts: 30000, ForgedShare: 0.05, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("noop", func(b *testing.B) {
		srv, err := loadgen.StartNoOp("tcp")
		if err != nil {
			b.Fatal(err)
		}
		defer srv.Close()
		runLoad(b, srv.Target, pool)
	})
	b.Run("abusemilter", func(b *testing.B) {
		target := startFromConfig(b, 10000)
		runLoad(b, target, pool)
	})
}

// BenchmarkLoadCorpus is BenchmarkLoad on the shared corpus's ham as it is
// ($ABUSEMILTER_CORPUS/spamassassin/ham; skipped without it), sent by
// 1,000 accounts in turn, each owning the domains its messages are sent as
// (perftest.Config with Corpus), with the production-shaped limits.
func BenchmarkLoadCorpus(b *testing.B) {
	root := testenv.Corpus(b)
	pool, err := loadgen.LoadCorpus(filepath.Join(root, "spamassassin", "ham"), loadgen.CorpusOptions{Accounts: 1000})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("noop", func(b *testing.B) {
		srv, err := loadgen.StartNoOp("tcp")
		if err != nil {
			b.Fatal(err)
		}
		defer srv.Close()
		runLoad(b, srv.Target, pool)
	})
	b.Run("abusemilter", func(b *testing.B) {
		target := startFromOptions(b, perftest.ConfigOptions{Corpus: pool, ProductionLimits: true, Listen: "inet:127.0.0.1:7357"})
		runLoad(b, target, pool)
	})
}

func runLoad(b *testing.B, target loadgen.Target, pool loadgen.Pool) {
	b.ReportAllocs()
	b.ResetTimer()
	rep, err := loadgen.Run(context.Background(), loadgen.Options{
		Target: target, Source: pool, Concurrency: 32, Count: int64(b.N),
	})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if rep.Failed > 0 {
		b.Fatalf("%d of %d messages failed: %v", rep.Failed, b.N, rep.Errors)
	}
	b.ReportMetric(rep.Rate, "msgs/s")
}

// startFromConfig serves a milter.Server built as the daemon builds it from
// a generated config with the given number of customers.
func startFromConfig(b *testing.B, customers int) loadgen.Target {
	return startFromOptions(b, perftest.ConfigOptions{Customers: customers, Listen: "inet:127.0.0.1:7357"})
}

// startFromOptions is startFromConfig for any generated config.
func startFromOptions(b *testing.B, opts perftest.ConfigOptions) loadgen.Target {
	data, err := perftest.Config(opts)
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Parse(data, "perf.yaml")
	if err != nil {
		b.Fatal(err)
	}
	dir, err := daemon.Directory(cfg)
	if err != nil {
		b.Fatal(err)
	}
	lim, err := daemon.Limiter(cfg)
	if err != nil {
		b.Fatal(err)
	}
	logger := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zap.InfoLevel))
	srv := milter.New(daemon.ServerOptions(cfg, daemon.Engine(cfg, dir, lim, nil), logger))
	return loadgen.Target{Network: "tcp", Address: miltertest.Serve(b, srv)}
}

package scoring_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/abusemilter/abusemilter/scoring"
)

// BenchmarkEngineGolden measures the rules on the golden corpus, one
// message per iteration (round robin), without DNS: ns/op and allocs/op
// are per message.
func BenchmarkEngineGolden(b *testing.B) {
	accts := testAccounts(b)
	e := testEngine(b, nil)
	type input struct {
		env  scoring.Envelope
		msg  *scoring.Message
		acct string
	}
	var inputs []input
	for _, gc := range goldenCases(b) {
		inputs = append(inputs, input{gc.env, readGoldenMessage(b, gc.name), gc.acct})
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		in := &inputs[i%len(inputs)]
		env := in.env
		e.Decide(ctx, &env, in.msg, accts[in.acct])
	}
}

// BenchmarkParseMessage measures ParseMessage on the golden corpus, one
// message per iteration.
func BenchmarkParseMessage(b *testing.B) {
	paths, _ := filepath.Glob(filepath.Join(goldenDir, "*.eml"))
	var raws [][]byte
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		raws = append(raws, raw)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := scoring.ParseMessage(bytes.NewReader(raws[i%len(raws)]), 64<<10); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEngineCorpus measures the rules on the real-mail corpus (skipped
// without $ABUSEMILTER_CORPUS).
func BenchmarkEngineCorpus(b *testing.B) {
	msgs := loadCorpus(b)
	e := scoring.NewEngine(nil, nil, scoring.Options{})
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		cm := &msgs[i%len(msgs)]
		e.Decide(ctx, cm.env, cm.msg, cm.acct)
	}
}

package loadgen

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/testutil/testenv"
)

func TestParseTarget(t *testing.T) {
	good := map[string]Target{
		"inet:127.0.0.1:7357":   {"tcp", "127.0.0.1:7357"},
		"inet:localhost:7357":   {"tcp", "localhost:7357"},
		"inet:[::1]:7357":       {"tcp", "[::1]:7357"},
		"inet:::1:7357":         {"tcp", "[::1]:7357"},
		"tcp:127.0.0.1:1":       {"tcp", "127.0.0.1:1"},
		"unix:/run/milter.sock": {"unix", "/run/milter.sock"},
	}
	for in, want := range good {
		got, err := ParseTarget(in)
		if err != nil || got != want {
			t.Errorf("ParseTarget(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "inet:", "inet:host", "inet::7357", "unix:", "udp:1.2.3.4:5", "/run/milter.sock"} {
		if got, err := ParseTarget(in); err == nil {
			t.Errorf("ParseTarget(%q) = %+v, want an error", in, got)
		} else if !strings.Contains(err.Error(), "milter address") {
			t.Errorf("ParseTarget(%q) error %q does not say what failed", in, err)
		}
	}
	if s := (Target{"tcp", "127.0.0.1:7357"}).String(); s != "inet:127.0.0.1:7357" {
		t.Errorf("String() = %q", s)
	}
}

func TestHistogramQuantilesMatchExactSamples(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h Histogram
	samples := make([]time.Duration, 20000)
	for i := range samples {
		// log-normal-ish latencies from ~10µs to ~100ms
		samples[i] = time.Duration(10e3 * (1 + rng.ExpFloat64()*rng.ExpFloat64()*50))
		h.Record(samples[i])
	}
	slices.Sort(samples)
	if h.Count() != uint64(len(samples)) || h.Max() != samples[len(samples)-1] {
		t.Fatalf("count %d max %v, want %d %v", h.Count(), h.Max(), len(samples), samples[len(samples)-1])
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		exact := samples[int(q*float64(len(samples)))-1]
		got := h.Quantile(q)
		if diff := float64(got-exact) / float64(exact); diff > 0.01 || diff < -0.01 {
			t.Errorf("q%v = %v, exact %v: %.2f%% off", q, got, exact, 100*diff)
		}
	}
	var empty Histogram
	if empty.Quantile(0.5) != 0 || empty.Mean() != 0 {
		t.Error("empty histogram is not zero")
	}
}

func TestHistogramBucketsCoverEveryValue(t *testing.T) {
	for _, v := range []uint64{0, 1, 255, 256, 257, 1000, 1 << 20, 1<<40 + 12345, 1<<63 - 1, 1<<64 - 1} {
		i := histIndex(v)
		if i < 0 || i >= histBuckets {
			t.Fatalf("value %d: index %d out of range", v, i)
		}
		low, width := histBounds(i)
		if v < low || v-low >= width {
			t.Errorf("value %d in bucket %d [%d, +%d)", v, i, low, width)
		}
	}
}

func TestGenerateShapesRealisticMessages(t *testing.T) {
	now := time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC)
	pool, err := Generate(GenerateOptions{Count: 400, Accounts: 50, ForgedShare: 0, Seed: 3, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if err := pool.Validate(); err != nil {
		t.Fatal(err)
	}
	logins := map[string]bool{}
	var size int
	for i, m := range pool {
		if n := len(m.Header); n < 10 || n > 20 {
			t.Errorf("message %d has %d header fields, want 10..20", i, n)
		}
		if n := len(m.Recipients); n < 1 || n > 5 {
			t.Errorf("message %d has %d recipients", i, n)
		}
		_, loginDomain, _ := strings.Cut(m.Login, "@")
		_, senderDomain, _ := strings.Cut(m.Sender, "@")
		if senderDomain != loginDomain || !strings.HasPrefix(loginDomain, "customer") {
			t.Errorf("message %d: login %q sends as %q without forging", i, m.Login, m.Sender)
		}
		if !strings.Contains(headerValue(m, "From"), "<"+m.Sender+">") {
			t.Errorf("message %d: From %q is not the sender %q", i, headerValue(m, "From"), m.Sender)
		}
		for _, name := range []string{"Date", "To", "Subject", "Message-ID", "MIME-Version", "Content-Type"} {
			if headerValue(m, name) == "" {
				t.Errorf("message %d has no %s", i, name)
			}
		}
		if d, err := time.Parse(time.RFC1123Z, headerValue(m, "Date")); err != nil || d.After(now) || now.Sub(d) > time.Hour {
			t.Errorf("message %d: Date %q (%v) is not just before the run", i, headerValue(m, "Date"), err)
		}
		if messageIndex(headerValue(m, "Message-ID")) != i {
			t.Errorf("message %d: Message-ID %q does not carry its index", i, headerValue(m, "Message-ID"))
		}
		if strings.Contains(strings.ReplaceAll(string(m.Body), "\r\n", ""), "\n") {
			t.Errorf("message %d: body has bare LF", i)
		}
		logins[m.Login] = true
		size += m.Size()
	}
	if avg := size / len(pool); avg < 4000 || avg > 7000 {
		t.Errorf("average size %d bytes, want about 5 KB", avg)
	}
	if len(logins) < 40 {
		t.Errorf("only %d distinct logins of 50 accounts", len(logins))
	}
	again, _ := Generate(GenerateOptions{Count: 400, Accounts: 50, Seed: 3, Now: now})
	if !reflect.DeepEqual(pool, again) {
		t.Error("the same options and seed gave a different pool")
	}
}

func TestGenerateForgedShare(t *testing.T) {
	pool, err := Generate(GenerateOptions{Count: 1000, Accounts: 10, ForgedShare: 0.2, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	forged := 0
	for _, m := range pool {
		_, loginDomain, _ := strings.Cut(m.Login, "@")
		if !strings.HasSuffix(m.Sender, "@"+loginDomain) {
			forged++
		}
	}
	if forged < 150 || forged > 250 {
		t.Errorf("%d of 1000 forged, want about 200", forged)
	}
}

func TestGenerateRejectsBadOptions(t *testing.T) {
	_, err := Generate(GenerateOptions{Count: -1, ForgedShare: 2, MinRcpt: 4, MaxRcpt: 2})
	if err == nil {
		t.Fatal("bad options accepted")
	}
	for _, want := range []string{"message count -1", "forged share 2", "4..2"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestParseMessage(t *testing.T) {
	raw := "Received: from a\r\n\tby b; Fri, 27 Nov 2026 06:00:00 +0000\r\n" +
		"From: Alice <alice@customer1.example>\r\n" +
		"To: bob@example.org, \"Carol\" <carol@example.net>\r\n" +
		"Cc: dave@example.com\r\n" +
		"Subject: hi\r\n\r\nline one\r\nline two\n"
	m, err := ParseMessage([]byte(raw), 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Header) != 5 || m.Header[0].Value != "from a\n\tby b; Fri, 27 Nov 2026 06:00:00 +0000" {
		t.Errorf("header %q", m.Header)
	}
	if m.Sender != "alice@customer1.example" || m.Login != m.Sender {
		t.Errorf("sender %q login %q", m.Sender, m.Login)
	}
	if !slices.Equal(m.Recipients, []string{"bob@example.org", "carol@example.net"}) {
		t.Errorf("recipients %q (capped at 2)", m.Recipients)
	}
	if string(m.Body) != "line one\r\nline two\r\n" {
		t.Errorf("body %q", m.Body)
	}
	if _, err := ParseMessage([]byte("\tcontinued\r\n\r\nbody"), 5); err == nil {
		t.Error("a message starting with a continuation line was accepted")
	}
	if _, err := ParseMessage([]byte("just a body line\r\n"), 5); err == nil {
		t.Error("a message without header fields was accepted")
	}
}

// ParseMessage reads what scoring.ParseBytes reads: an mbox "From " line
// is skipped, a folded address list is unfolded for the envelope, encoded
// display names do not get in the way, and a body without a blank line
// before it starts at the first line that is not a field.
func TestParseMessageAsScoringParses(t *testing.T) {
	raw := "From alice@customer1.example Fri Nov 27 06:00:00 2026\n" +
		"From: =?utf-8?q?Al=C3=AFce?= <alice@customer1.example>\n" +
		"To: bob@example.org,\n carol@example.net\n" +
		"Subject: folded\n\tsubject\n" +
		"the body\n"
	m, err := ParseMessage([]byte(raw), 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Header) != 3 || m.Header[0].Name != "From" || m.Header[2].Value != "folded\n\tsubject" {
		t.Errorf("header %q", m.Header)
	}
	if m.Sender != "alice@customer1.example" {
		t.Errorf("sender %q", m.Sender)
	}
	if !slices.Equal(m.Recipients, []string{"bob@example.org", "carol@example.net"}) {
		t.Errorf("recipients %q", m.Recipients)
	}
	if string(m.Body) != "the body\r\n" {
		t.Errorf("body %q", m.Body)
	}
}

func TestLoadCorpusNamesTheBadFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.eml"), []byte("From: a@example.org\r\nTo: b@example.org\r\n\r\nhi\r\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "b.eml"), []byte("no header here\r\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadCorpus(dir, CorpusOptions{})
	if err == nil || !strings.Contains(err.Error(), "b.eml") {
		t.Fatalf("error %v does not name b.eml", err)
	}
	pool, err := LoadCorpus(dir, CorpusOptions{Limit: 1})
	if err != nil || len(pool) != 1 || pool[0].Sender != "a@example.org" || pool[0].ClientAddr == "" {
		t.Fatalf("LoadCorpus with limit 1: %v, %+v", err, pool)
	}
	if _, err := LoadCorpus(t.TempDir(), CorpusOptions{}); err == nil || !strings.Contains(err.Error(), "no .eml files") {
		t.Errorf("empty corpus: %v", err)
	}
}

func TestLoadCorpusReadsThePublicCorpus(t *testing.T) {
	dir := testenv.Corpus(t)
	pool, err := LoadCorpus(dir, CorpusOptions{Limit: 200})
	if err != nil {
		t.Fatal(err)
	}
	if err := pool.Validate(); err != nil {
		t.Fatal(err)
	}
	srv := startNoOp(t, "tcp")
	rep, err := Run(t.Context(), Options{Target: srv.Target, Source: pool, Count: int64(len(pool)), Concurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Messages != int64(len(pool)) || rep.Failed != 0 {
		t.Errorf("corpus run: %d messages, %d failed (%v), want %d", rep.Messages, rep.Failed, rep.ErrorSamples, len(pool))
	}
}

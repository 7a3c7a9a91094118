package scoring_test

import (
	"context"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/identity"
	"github.com/abusemilter/abusemilter/internal/testutil/testenv"
	"github.com/abusemilter/abusemilter/scoring"
)

var corpusReport = flag.String("corpus-report", "", "write per-rule firing counts on the real-mail corpus to this markdown file")

// corpusMessage is one received message turned back into a submission.
type corpusMessage struct {
	class string // ham, hard-ham or spam
	name  string
	env   *scoring.Envelope
	msg   *scoring.Message
	acct  *identity.Account
	now   time.Time
}

// loadCorpus reads $ABUSEMILTER_CORPUS (testenv.Corpus stops the test without it):
// every .eml under a ham, hard-ham or spam folder.
func loadCorpus(t testing.TB) []corpusMessage {
	root := testenv.Corpus(t)
	var out []corpusMessage
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".eml") {
			return err
		}
		class := filepath.Base(filepath.Dir(path))
		if class != "ham" && class != "hard-ham" && class != "spam" {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		m, err := scoring.ParseMessage(f, 64<<10)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		cm, err := asSubmission(m)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		cm.class, cm.name = class, filepath.Base(path)
		out = append(out, cm)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("no messages under %q (want ham/, hard-ham/, spam/ folders of .eml files)", root)
	}
	return out
}

// asSubmission treats a received message as sent by an account that owns
// its From domain (scoring.AsReceived).
func asSubmission(m *scoring.Message) (corpusMessage, error) {
	r := scoring.AsReceived(m, "corpus", time.Date(2002, 9, 1, 0, 0, 0, 0, time.UTC))
	return corpusMessage{env: r.Env, msg: m, acct: r.Account, now: r.Now}, nil
}

// TestCorpusNoHamRejected is the false-positive bar: no legitimate message
// of the real-mail corpus may be rejected.
func TestCorpusNoHamRejected(t *testing.T) {
	msgs := loadCorpus(t)
	counts := map[string]map[string]int{}
	totals := map[string]int{}
	rejected := map[string]int{}
	decidedBy := map[string]int{}
	for _, cm := range msgs {
		now := cm.now
		e := scoring.NewEngine(nil, nil, scoring.Options{Now: func() time.Time { return now }})
		v := e.Decide(context.Background(), cm.env, cm.msg, cm.acct)
		totals[cm.class]++
		for _, f := range v.Findings {
			if counts[f.Rule] == nil {
				counts[f.Rule] = map[string]int{}
			}
			counts[f.Rule][cm.class]++
		}
		if v.Action == scoring.Reject {
			rejected[cm.class]++
			decidedBy[v.Rule+" ("+cm.class+")"]++
			if cm.class != "spam" {
				t.Errorf("%s/%s rejected: %s (findings %v)", cm.class, cm.name, v.Reply(), findingReasons(v))
			}
		}
	}
	t.Logf("messages %v, rejected %v", totals, rejected)
	if *corpusReport != "" {
		if err := os.WriteFile(*corpusReport, []byte(corpusTable(counts, totals, rejected)+decidedTable(decidedBy)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func decidedTable(decidedBy map[string]int) string {
	var keys []string
	for k := range decidedBy {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("\n| rejections named by | messages |\n| --- | ---: |\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "| %s | %d |\n", k, decidedBy[k])
	}
	return b.String()
}

func findingReasons(v scoring.Verdict) []string {
	var out []string
	for _, f := range v.Findings {
		out = append(out, fmt.Sprintf("%s(%g): %s", f.Rule, f.Score, f.Reason))
	}
	return out
}

func corpusTable(counts map[string]map[string]int, totals, rejected map[string]int) string {
	var b strings.Builder
	classes := []string{"ham", "hard-ham", "spam"}
	fmt.Fprintf(&b, "| rule | ham (%d) | hard-ham (%d) | spam (%d) |\n| --- | ---: | ---: | ---: |\n", totals["ham"], totals["hard-ham"], totals["spam"])
	var rules []string
	for r := range counts {
		rules = append(rules, r)
	}
	sort.Strings(rules)
	for _, r := range rules {
		fmt.Fprintf(&b, "| %s |", r)
		for _, c := range classes {
			fmt.Fprintf(&b, " %d |", counts[r][c])
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "| **rejected** | %d | %d | %d |\n", rejected["ham"], rejected["hard-ham"], rejected["spam"])
	return b.String()
}

package scoring_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/abusemilter/abusemilter/scoring"
)

// goldenDir holds the golden corpus: NAME.eml beside NAME.expected. An
// expected file starts with set-up lines (account, mail-from, rcpt; "<>"
// is the null sender, rcpt is a space-separated list), then "---" and the
// verdict, which -update rewrites.
const goldenDir = "../testdata/messages"

type goldenCase struct {
	name  string
	setup []string // the set-up lines as written
	env   scoring.Envelope
	acct  string
}

func readGoldenSetup(path string) (goldenCase, error) {
	f, err := os.Open(path)
	if err != nil {
		return goldenCase{}, err
	}
	defer f.Close()
	gc := goldenCase{name: strings.TrimSuffix(filepath.Base(path), ".expected")}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "---" {
			break
		}
		gc.setup = append(gc.setup, line)
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			return gc, fmt.Errorf("%s: set-up line %q is not \"key: value\"", path, line)
		}
		switch k {
		case "account":
			gc.acct, gc.env.AuthLogin = v, v
		case "mail-from":
			if v != "<>" {
				gc.env.MailFrom = v
			}
		case "rcpt":
			gc.env.Rcpts = strings.Fields(v)
		default:
			return gc, fmt.Errorf("%s: unknown set-up key %q", path, k)
		}
	}
	return gc, sc.Err()
}

// goldenResult renders a verdict for an expected file.
func goldenResult(v scoring.Verdict) string {
	var b strings.Builder
	fmt.Fprintf(&b, "---\naction: %s\nreply: %s\nscore: %g\n", v.Action, v.Reply(), v.Score)
	for _, f := range v.Findings {
		fmt.Fprintf(&b, "finding: %s %g%s: %s\n", f.Rule, f.Score, map[bool]string{true: " decisive"}[f.Decisive], f.Reason)
	}
	return b.String()
}

func goldenCases(t testing.TB) []goldenCase {
	paths, err := filepath.Glob(filepath.Join(goldenDir, "*.expected"))
	if err != nil {
		t.Fatal(err)
	}
	emls, _ := filepath.Glob(filepath.Join(goldenDir, "*.eml"))
	if len(emls) < 60 || len(paths) != len(emls) {
		t.Fatalf("golden corpus has %d .eml and %d .expected files; want at least 60, one each", len(emls), len(paths))
	}
	var out []goldenCase
	for _, p := range paths {
		gc, err := readGoldenSetup(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, gc)
	}
	return out
}

func readGoldenMessage(t testing.TB, name string) *scoring.Message {
	t.Helper()
	f, err := os.Open(filepath.Join(goldenDir, name+".eml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := scoring.ParseMessage(f, 64<<10)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return m
}

// TestGoldenMessages compares each golden message's verdict with its
// expected file; run with -update to rewrite the verdicts.
func TestGoldenMessages(t *testing.T) {
	accts := testAccounts(t)
	e := testEngine(t, testResolver())
	for _, gc := range goldenCases(t) {
		t.Run(gc.name, func(t *testing.T) {
			acct := accts[gc.acct]
			if acct == nil {
				t.Fatalf("unknown account %q", gc.acct)
			}
			env := gc.env
			v := e.Decide(context.Background(), &env, readGoldenMessage(t, gc.name), acct)
			want := strings.Join(gc.setup, "\n") + "\n" + goldenResult(v)
			path := filepath.Join(goldenDir, gc.name+".expected")
			if *update {
				if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != want {
				t.Errorf("%s differs from the verdict (run with -update if the change is intended):\n%s", path, lineDiff(string(got), want))
			}
		})
	}
}

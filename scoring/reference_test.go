package scoring_test

import (
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/abusemilter/abusemilter/scoring"
)

var update = flag.Bool("update", false, "rewrite golden files (docs/rules.md, testdata/messages/*.expected) from the code")

// TestRuleReference fails when docs/rules.md is not what the code says.
func TestRuleReference(t *testing.T) {
	path := filepath.Join("..", "docs", "rules.md")
	want := scoring.RuleReference()
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run: go test ./scoring -run TestRuleReference -update)", err)
	}
	if string(got) != want {
		t.Fatalf("docs/rules.md is stale; run: go test ./scoring -run TestRuleReference -update\n%s", lineDiff(string(got), want))
	}
	for _, r := range scoring.DefaultRules() {
		if r.Summary == "" || r.FalsePositives == "" || r.Clause == "" || r.Score <= 0 {
			t.Errorf("rule %s lacks a summary, false-positive note, clause or score", r.ID)
		}
		if !strings.Contains(want, "## "+r.ID+"\n") {
			t.Errorf("reference has no section for %s", r.ID)
		}
	}
}

// lineDiff shows the lines that differ between two texts, for readable
// golden-file failures.
func lineDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	var b strings.Builder
	for i := 0; i < max(len(g), len(w)); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			b.WriteString("line ")
			b.WriteString(strconv.Itoa(i + 1))
			b.WriteString(":\n  - " + gl + "\n  + " + wl + "\n")
		}
	}
	return b.String()
}

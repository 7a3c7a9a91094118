package metrics

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestOperationsDocListsEveryMetric keeps the metrics table of
// docs/operations.md and the registry in step.
func TestOperationsDocListsEveryMetric(t *testing.T) {
	data, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatalf("reading the operations guide: %v", err)
	}
	var documented []string
	for _, m := range regexp.MustCompile("(?m)^\\| `(abusemilter_[a-z_]+)` \\|").FindAllStringSubmatch(string(data), -1) {
		documented = append(documented, m[1])
	}

	// Every family registered, with or without samples.
	var registered []string
	for _, name := range New(BuildInfo{Version: "v", Commit: "c"}).Names() {
		if strings.HasPrefix(name, Namespace+"_") {
			registered = append(registered, name)
		}
	}
	slices.Sort(documented)
	slices.Sort(registered)
	if !slices.Equal(documented, registered) {
		t.Errorf("documented metrics:\n  %s\nregistered metrics:\n  %s", strings.Join(documented, "\n  "), strings.Join(registered, "\n  "))
	}
}

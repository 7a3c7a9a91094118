package metrics

import (
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
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

	m := New(BuildInfo{Version: "v", Commit: "c"})
	// Touch every vector so that each family has a sample.
	m.Decision("accept", "", "", []string{"R"}, time.Millisecond)
	m.ConfigReloaded(errors.New("x"))
	m.NotifySent("audit")
	m.NotifyFailed("audit")
	m.NotifyDropped("audit")
	m.WatchStore(func() StoreStats { return StoreStats{} })
	m.WatchSubscription(func() (bool, bool) { return true, true })
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var registered []string
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), Namespace+"_") {
			registered = append(registered, f.GetName())
		}
	}
	slices.Sort(documented)
	slices.Sort(registered)
	if !slices.Equal(documented, registered) {
		t.Errorf("documented metrics:\n  %s\nregistered metrics:\n  %s", strings.Join(documented, "\n  "), strings.Join(registered, "\n  "))
	}
}

// Package prometheus_test checks the shipped Prometheus rules with
// Prometheus's own promtool (Debian package prometheus): the file loads
// (promtool check rules) and its alerts fire as their unit tests say
// (promtool test rules abusemilter.rules.test.yml). That every metric the
// rules use is one the daemon registers is checked in internal/daemon.
package prometheus_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/abusemilter/abusemilter/internal/testutil/testenv"
)

func TestPromtoolCheckRules(t *testing.T) {
	promtool := testenv.RequireTool(t, "promtool")
	out, err := exec.Command(promtool, "check", "rules", "abusemilter.rules.yml").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

func TestPromtoolTestRules(t *testing.T) {
	promtool := testenv.RequireTool(t, "promtool")
	out, err := exec.Command(promtool, "test", "rules", "abusemilter.rules.test.yml").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}

package metrics

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestAntivirusMetricsDocumented keeps docs/antivirus.md's metrics table
// and the antivirus metrics in step, and checks the values read.
func TestAntivirusMetricsDocumented(t *testing.T) {
	data, err := os.ReadFile("../../docs/antivirus.md")
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for _, m := range regexp.MustCompile("(?m)^\\| `(abusemilter_antivirus_[a-z_]+)` \\|").FindAllStringSubmatch(string(data), -1) {
		documented = append(documented, m[1])
	}
	m := New(BuildInfo{})
	m.VirusFound("Eicar") // before WatchAntivirus: a no-op
	m.WatchAntivirus(func() AntivirusStats { return AntivirusStats{Scans: 5, Found: 2, Errors: 1, BreakerOpen: true} })
	m.WatchAntivirus(func() AntivirusStats { return AntivirusStats{} }) // a second call changes nothing
	m.VirusFound("Eicar-Test-Signature")
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var registered []string
	values := map[string]float64{}
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), Namespace+"_antivirus_") {
			continue
		}
		registered = append(registered, f.GetName())
		for _, s := range f.GetMetric() {
			switch {
			case s.GetCounter() != nil:
				values[f.GetName()] += s.GetCounter().GetValue()
			case s.GetGauge() != nil:
				values[f.GetName()] += s.GetGauge().GetValue()
			}
		}
	}
	slices.Sort(documented)
	slices.Sort(registered)
	if !slices.Equal(documented, registered) {
		t.Errorf("documented:\n  %s\nregistered:\n  %s", strings.Join(documented, "\n  "), strings.Join(registered, "\n  "))
	}
	for name, want := range map[string]float64{
		"abusemilter_antivirus_scans_total": 5, "abusemilter_antivirus_infected_total": 2, "abusemilter_antivirus_errors_total": 1,
		"abusemilter_antivirus_circuit_open": 1, "abusemilter_antivirus_signatures_total": 1,
	} {
		if values[name] != want {
			t.Errorf("%s = %v, want %v", name, values[name], want)
		}
	}
}

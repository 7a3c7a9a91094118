package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/config"
)

func TestAntivirusConfig(t *testing.T) {
	c, err := config.Parse([]byte("antivirus:\n  clamd: unix:/run/clamav/clamd.ctl\n  timeout: 3s\n  max_size: 10MiB\n  action: hold\n  on_error: defer\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	a := c.Antivirus
	if a.Clamd != "unix:/run/clamav/clamd.ctl" || a.Timeout.Duration != 3*time.Second || a.MaxSize.Bytes != 10<<20 || a.Action != "hold" || a.OnError != "defer" || a.Inspect.MaxDepth != 5 {
		t.Errorf("parsed %+v", a)
	}
	if d := config.Default().Antivirus; d.Clamd != "" || d.Action != "reject" || d.OnError != "accept" {
		t.Errorf("defaults %+v", d)
	}
	_, err = config.Parse([]byte(`antivirus:
  clamd: /run/clamav/clamd.ctl
  timeout: 10ms
  max_size: 5GiB
  action: quarantine
  on_error: reject
  inspect:
    max_depth: 0
    max_entries: 0
    max_expanded: 1KiB
    max_time: 1ms
`), "bad.yaml")
	for _, want := range []string{
		"antivirus.clamd: clamd address", "antivirus.timeout:", "antivirus.max_size:", `antivirus.action: "quarantine"`,
		`antivirus.on_error: "reject"`, "antivirus.inspect.max_depth:", "antivirus.inspect.max_entries:",
		"antivirus.inspect.max_expanded:", "antivirus.inspect.max_time:",
	} {
		if err == nil || !strings.Contains(withoutLines(err), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}

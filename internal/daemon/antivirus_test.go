package daemon

import (
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/config"
	"github.com/abusemilter/abusemilter/scoring"
)

func TestAntivirusAssembly(t *testing.T) {
	for _, tc := range []struct {
		action, onError string
		want            scoring.MalwareOptions
	}{
		{"reject", "accept", scoring.MalwareOptions{Action: scoring.Reject, OnError: scoring.Accept}},
		{"defer", "defer", scoring.MalwareOptions{Action: scoring.Defer, OnError: scoring.Defer}},
		{"hold", "accept", scoring.MalwareOptions{Action: scoring.Hold, OnError: scoring.Accept}},
	} {
		a := config.DefaultAntivirus()
		a.Action, a.OnError = tc.action, tc.onError
		if got := malwareOptions(a); got != tc.want {
			t.Errorf("%s/%s: %+v, want %+v", tc.action, tc.onError, got, tc.want)
		}
	}
	cfg := config.Default()
	if c, err := Clamd(cfg); c != nil || err != nil {
		t.Errorf("no clamd configured: %v, %v", c, err)
	}
	if o := MalwareStreamOptions(cfg, nil); o.Antivirus != nil || o.Limits.MaxDepth != 5 || o.Limits.MaxTime != 2*time.Second {
		t.Errorf("stream options %+v", o)
	}
	cfg.Antivirus.Clamd = "unix:/run/clamav/clamd.ctl"
	c, err := Clamd(cfg)
	if err != nil || c == nil || c.Address() != cfg.Antivirus.Clamd {
		t.Fatalf("clamd client: %v, %v", c, err)
	}
	if o := MalwareStreamOptions(cfg, c); o.Antivirus == nil {
		t.Error("stream options without the scanner")
	}
	old := config.DefaultAntivirus()
	changed := old
	changed.Action = "defer"
	if r := antivirusRestartOnly(old, changed); r != nil {
		t.Errorf("action change needs a restart? %v", r)
	}
	changed.Inspect.MaxDepth = 3
	if r := antivirusRestartOnly(old, changed); len(r) != 1 {
		t.Errorf("inspect change: %v", r)
	}
}

package daemon

import (
	"testing"

	"github.com/abusemilter/abusemilter/internal/config"
)

func TestSameLimiterSettings(t *testing.T) {
	parse := func(y string) *config.Config {
		t.Helper()
		c, err := config.Parse([]byte(y), "test.yaml")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	base := parse("limits:\n  account_messages: [\"10/1h\"]\n")
	for _, tt := range []struct {
		name string
		y    string
		same bool
	}{
		{"identical", "limits:\n  account_messages: [\"10/1h\"]\n", true},
		{"mode and recipient cap do not touch the limiter", "mode: monitor\nlimits:\n  account_messages: [\"10/1h\"]\n  max_recipients_per_message: 7\n", true},
		{"a rate changed", "limits:\n  account_messages: [\"20/1h\"]\n", false},
		{"an exemption added", "limits:\n  account_messages: [\"10/1h\"]\n  exempt:\n    accounts: [local]\n", false},
		{"strike policy changed", "limits:\n  account_messages: [\"10/1h\"]\nstrikes:\n  threshold: 3\n", false},
	} {
		if got := sameLimiterSettings(base, parse(tt.y)); got != tt.same {
			t.Errorf("%s: sameLimiterSettings = %v, want %v", tt.name, got, tt.same)
		}
	}
}

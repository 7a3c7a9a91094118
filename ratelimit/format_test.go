package ratelimit

import (
	"testing"
	"time"
)

func TestFormatWindow(t *testing.T) {
	for d, want := range map[time.Duration]string{time.Hour: "1h", 24 * time.Hour: "24h", 10 * time.Minute: "10m", 90 * time.Second: "90s", 0: "0s"} {
		if got := FormatWindow(d); got != want {
			t.Errorf("FormatWindow(%v) = %q, want %q", d, got, want)
		}
	}
}

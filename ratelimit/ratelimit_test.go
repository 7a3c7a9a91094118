package ratelimit

import (
	"strings"
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Rate
		err  string
	}{
		{in: "200/1h", want: Rate{200, time.Hour}},
		{in: " 20 / 10m ", want: Rate{20, 10 * time.Minute}},
		{in: "100/h", want: Rate{100, time.Hour}},
		{in: "500/1d", want: Rate{500, 24 * time.Hour}},
		{in: "5/90s", want: Rate{5, 90 * time.Second}},
		{in: "200", err: "want N/DURATION"},
		{in: "-1/1h", err: "not a non-negative whole number"},
		{in: "1/500ms", err: "at least 1s"},
		{in: "1/1500ms", err: "whole seconds"},
		{in: "1/1x", err: "bad window"},
	} {
		got, err := ParseRate(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), tc.in) {
				t.Errorf("ParseRate(%q) = %v, %v; want an error naming the input and %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if back, err := ParseRate(got.String()); err != nil || back != got {
			t.Errorf("ParseRate(%q.String() = %q) = %v, %v; want the same rate", tc.in, got.String(), back, err)
		}
	}
}

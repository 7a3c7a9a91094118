package breaker

import (
	"testing"
	"time"
)

func TestBreakerOpensProbesAndCloses(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	b := New(3, time.Second)
	for i := range 2 {
		if !b.Allow(t0) || b.Done(t0, false) {
			t.Fatalf("failure %d: refused or opened before 3 failures", i+1)
		}
	}
	if !b.Allow(t0) || !b.Done(t0, false) || !b.IsOpen() {
		t.Fatal("the third consecutive failure did not open the breaker")
	}
	if b.Allow(t0.Add(999 * time.Millisecond)) {
		t.Error("an open breaker let a call through before the probe interval")
	}
	probe := t0.Add(time.Second)
	if !b.Allow(probe) {
		t.Fatal("no probe after the probe interval")
	}
	if b.Allow(probe) {
		t.Error("a second probe while the first is out")
	}
	if b.Done(probe, false) || !b.IsOpen() {
		t.Error("a failed probe must keep it open without reopening it")
	}
	if b.Allow(probe.Add(500*time.Millisecond)) || !b.Allow(probe.Add(time.Second)) {
		t.Error("the next probe is not one interval after the failed one")
	}
	if b.Done(probe.Add(time.Second), true) || b.IsOpen() || !b.Allow(probe.Add(time.Second)) {
		t.Error("a successful probe did not close the breaker")
	}
	b.Done(probe, false)
	if b.IsOpen() {
		t.Error("one failure after closing reopened it: the count must restart")
	}
}

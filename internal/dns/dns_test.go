package dns

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestCachePositiveNegativeAndExpiry(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st := &Static{Records: map[string][]string{"_dmarc.example.com": {"v=DMARC1; p=reject"}}}
	r := NewCache(st, Options{PositiveTTL: time.Minute, NegativeTTL: 10 * time.Second, Now: func() time.Time { return now }})
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		txt, err := r.LookupTXT(ctx, "_DMARC.example.com.")
		if err != nil || len(txt) != 1 || txt[0] != "v=DMARC1; p=reject" {
			t.Fatalf("lookup %d: %v %v", i, txt, err)
		}
		if _, err := r.LookupTXT(ctx, "_dmarc.nowhere.test"); !IsNotFound(err) {
			t.Fatalf("lookup %d of missing name: err %v, want not found", i, err)
		}
	}
	if n := st.Lookups(); n != 2 {
		t.Fatalf("backend lookups = %d, want 2 (cached after the first)", n)
	}
	now = now.Add(11 * time.Second) // negative entry expired, positive not
	r.LookupTXT(ctx, "_dmarc.example.com")
	r.LookupTXT(ctx, "_dmarc.nowhere.test")
	if n := st.Lookups(); n != 3 {
		t.Fatalf("backend lookups after negative expiry = %d, want 3", n)
	}
	now = now.Add(time.Minute)
	r.LookupTXT(ctx, "_dmarc.example.com")
	if n := st.Lookups(); n != 4 {
		t.Fatalf("backend lookups after positive expiry = %d, want 4", n)
	}
}

func TestCacheDoesNotKeepFailuresOrTimeouts(t *testing.T) {
	servfail := errors.New("server misbehaving")
	st := &Static{Fail: map[string]error{"bad.test": servfail}, Hang: map[string]bool{"slow.test": true}}
	r := NewCache(st, Options{})
	for i := 0; i < 2; i++ {
		if _, err := r.LookupTXT(context.Background(), "bad.test"); !errors.Is(err, servfail) {
			t.Fatalf("err = %v, want the injected failure", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		_, err := r.LookupTXT(ctx, "slow.test")
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("hanging lookup: err = %v, want deadline exceeded", err)
		}
	}
	if n := st.Lookups(); n != 4 {
		t.Fatalf("backend lookups = %d, want 4 (failures are not cached)", n)
	}
	if r.Len() != 0 {
		t.Fatalf("cache holds %d entries, want 0", r.Len())
	}
}

func TestCacheSizeCap(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	recs := map[string][]string{}
	for i := 0; i < 50; i++ {
		recs[fmt.Sprintf("n%d.test", i)] = []string{"x"}
	}
	r := NewCache(&Static{Records: recs}, Options{MaxEntries: 8, Now: func() time.Time { return now }})
	for i := 0; i < 50; i++ {
		if _, err := r.LookupTXT(context.Background(), fmt.Sprintf("n%d.test", i)); err != nil {
			t.Fatal(err)
		}
		if r.Len() > 8 {
			t.Fatalf("cache grew to %d entries, cap is 8", r.Len())
		}
	}
}

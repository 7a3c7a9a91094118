package dns

import (
	"context"
	"errors"
	"net"
	"slices"
	"testing"
	"time"
)

// TestObserveResults: every lookup is reported once with its result, and
// only cache misses as queries.
func TestObserveResults(t *testing.T) {
	type seen struct {
		result  string
		queried bool
	}
	var got []seen
	backend := &Static{
		Records: map[string][]string{"_dmarc.a.example": {"v=DMARC1; p=reject"}},
		Fail: map[string]error{
			"_dmarc.broken.example": errors.New("server misbehaving"),
			"_dmarc.slow.example":   &net.DNSError{Err: "i/o timeout", Name: "_dmarc.slow.example", IsTimeout: true},
		},
		Hang: map[string]bool{"_dmarc.hang.example": true},
	}
	r := NewCache(backend, Options{Observe: func(result string, queried bool, _ time.Duration) {
		got = append(got, seen{result, queried})
	}})
	ctx := context.Background()
	r.LookupTXT(ctx, "_dmarc.a.example")
	r.LookupTXT(ctx, "_dmarc.a.example")
	r.LookupTXT(ctx, "_dmarc.none.example")
	r.LookupTXT(ctx, "_dmarc.broken.example")
	r.LookupTXT(ctx, "_dmarc.slow.example")
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	r.LookupTXT(short, "_dmarc.hang.example")
	want := []seen{{ResultAnswer, true}, {ResultCacheHit, false}, {ResultNotFound, true}, {ResultError, true}, {ResultTimeout, true}, {ResultBudget, true}}
	if !slices.Equal(got, want) {
		t.Errorf("observed %v, want %v", got, want)
	}
}

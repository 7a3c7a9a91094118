// Package dns provides the DNS access the scoring rules use: a TXT-record
// Resolver over the system resolver with a size-capped, TTL-bounded cache
// (positive and negative answers), and a Static in-memory resolver for tests
// and offline runs, with injectable failures and timeouts.
//
// Both satisfy scoring.Resolver. Lookups honour the context deadline; a
// failure or timeout is returned to the caller, which must treat it as "no
// answer" and never block mail on it.
package dns

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"time"
)

// Lookuper is the one DNS query the cache needs from its backend.
type Lookuper interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// Options tunes a caching Resolver. Zero values mean the defaults.
type Options struct {
	// PositiveTTL is how long an answer is kept (default 5 minutes). The
	// system resolver does not report record TTLs, so this is an upper bound
	// chosen by the operator.
	PositiveTTL time.Duration
	// NegativeTTL is how long "no such name" / "no records" is kept
	// (default 1 minute). Temporary failures and timeouts are never cached.
	NegativeTTL time.Duration
	// MaxEntries caps the cache (default 10,000 names).
	MaxEntries int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Observe, when set, is told of every lookup: its result (one of the
	// Result* names) and, when the lookup queried the backend (a cache
	// miss), how long the query took. It must not block.
	Observe func(result string, queried bool, took time.Duration)
}

// The results a lookup is reported with (Options.Observe; metric labels).
const (
	ResultCacheHit = "cache_hit"        // answered from the cache
	ResultAnswer   = "answer"           // the backend answered with records
	ResultNotFound = "not_found"        // the name or its records do not exist
	ResultError    = "error"            // any other failure (SERVFAIL, refused, ...)
	ResultTimeout  = "timeout"          // the resolver itself timed out
	ResultBudget   = "budget_exhausted" // the caller's deadline (the message's DNS budget, a DKIM key's deadline) ended first
)

// Resolver answers TXT queries through a backend and caches the answers.
// It is safe for concurrent use.
type Resolver struct {
	backend Lookuper
	opts    Options

	mu      sync.Mutex
	entries map[string]entry
}

type entry struct {
	txt     []string
	err     error // non-nil for a cached negative answer
	expires time.Time
}

// New returns a caching resolver over the system resolver (net.Resolver,
// which reads /etc/resolv.conf).
func New(opts Options) *Resolver {
	return NewCache(systemResolver{r: &net.Resolver{}}, opts)
}

// NewCache returns a caching resolver over any backend (tests pass a Static).
func NewCache(backend Lookuper, opts Options) *Resolver {
	if opts.PositiveTTL <= 0 {
		opts.PositiveTTL = 5 * time.Minute
	}
	if opts.NegativeTTL <= 0 {
		opts.NegativeTTL = time.Minute
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = 10000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Resolver{backend: backend, opts: opts, entries: make(map[string]entry)}
}

// LookupTXT returns the TXT records of name, from the cache when fresh.
// A name that does not exist yields an error for which IsNotFound is true.
func (r *Resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	key := canonicalName(name)
	now := r.opts.Now()
	r.mu.Lock()
	if e, ok := r.entries[key]; ok && now.Before(e.expires) {
		r.mu.Unlock()
		if r.opts.Observe != nil {
			r.opts.Observe(ResultCacheHit, false, 0)
		}
		return e.txt, e.err
	}
	r.mu.Unlock()

	start := time.Now()
	txt, err := r.backend.LookupTXT(ctx, key)
	switch {
	case err == nil:
		r.store(key, entry{txt: txt, expires: now.Add(r.opts.PositiveTTL)})
	case IsNotFound(err):
		r.store(key, entry{err: err, expires: now.Add(r.opts.NegativeTTL)})
	}
	if r.opts.Observe != nil {
		r.opts.Observe(result(ctx, err), true, time.Since(start))
	}
	return txt, err
}

// result classifies a backend answer for Options.Observe.
func result(ctx context.Context, err error) string {
	var de *net.DNSError
	switch {
	case err == nil:
		return ResultAnswer
	case IsNotFound(err):
		return ResultNotFound
	case ctx.Err() != nil:
		return ResultBudget
	case errors.As(err, &de) && de.IsTimeout:
		return ResultTimeout
	}
	return ResultError
}

// Len returns the number of cached names (for tests and metrics).
func (r *Resolver) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.entries)
}

// store adds an entry, first dropping expired ones and then, if still full,
// arbitrary ones, so that the cache never exceeds MaxEntries.
func (r *Resolver) store(key string, e entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.entries[key]; !ok && len(r.entries) >= r.opts.MaxEntries {
		now := r.opts.Now()
		for k, old := range r.entries {
			if !now.Before(old.expires) {
				delete(r.entries, k)
			}
		}
		for k := range r.entries {
			if len(r.entries) < r.opts.MaxEntries {
				break
			}
			delete(r.entries, k)
		}
	}
	r.entries[key] = e
}

// IsNotFound reports whether err says the name or its records do not exist
// (a definite, cacheable answer rather than a failure).
func IsNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// NotFound returns the error a resolver gives for a name without records.
func NotFound(name string) error {
	return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func canonicalName(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

// systemResolver adapts net.Resolver.
type systemResolver struct{ r *net.Resolver }

func (s systemResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	return s.r.LookupTXT(ctx, name)
}

package dns

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// Static is an in-memory resolver: a map of names to TXT records, with
// injectable failures and hangs. Names absent from Records (and from Fail and
// Hang) do not exist. It is safe for concurrent use once built.
type Static struct {
	// Records maps a lowercase name without trailing dot to its TXT records.
	Records map[string][]string
	// Fail maps names to the error their lookup returns (a SERVFAIL, say).
	Fail map[string]error
	// Hang lists names whose lookup blocks until the context is done, as a
	// resolver that never answers would.
	Hang map[string]bool

	lookups atomic.Int64
	mu      sync.Mutex
	asked   []string
}

// LookupTXT answers from the maps.
func (s *Static) LookupTXT(ctx context.Context, name string) ([]string, error) {
	name = canonicalName(name)
	s.lookups.Add(1)
	s.mu.Lock()
	s.asked = append(s.asked, name)
	s.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("lookup %q: %w", name, err)
	}
	if s.Hang[name] {
		<-ctx.Done()
		return nil, fmt.Errorf("lookup %q: %w", name, ctx.Err())
	}
	if err, ok := s.Fail[name]; ok {
		return nil, err
	}
	if txt, ok := s.Records[name]; ok {
		return txt, nil
	}
	return nil, NotFound(name)
}

// Lookups returns how many lookups were made.
func (s *Static) Lookups() int64 { return s.lookups.Load() }

// Asked returns the names looked up, in order.
func (s *Static) Asked() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.asked...)
}

// Both resolvers answer the one query the rules need.
var (
	_ Lookuper = (*Static)(nil)
	_ Lookuper = (*Resolver)(nil)
)

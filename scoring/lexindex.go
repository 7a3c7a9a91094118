package scoring

import (
	"hash/maphash"
	"slices"
	"unicode/utf8"
)

// lexIndex finds the reference entries a domain may imitate without
// comparing it with every entry: with tens of thousands of customer domains
// a linear scan (typoOf on each) cost milliseconds per message. It gives
// the same answer as preparedDomain.lookalikeOf over its entries, in the
// same order: lookups only gather candidates, which lookalikeOf's own tests
// then decide.
//
// Candidates for "confusable spelling" and "one typo away" come from a
// deletion neighbourhood: every skeleton is indexed under itself and under
// each form with one rune left out. Two skeletons one slip apart (a rune
// left out, added or changed, or two neighbours swapped) always share one
// of those keys. Keys are 64-bit hashes, so a collision only adds a
// candidate. Candidates for "embeds the domain" come from looking up each
// run of whole labels of the domain that ends before a '.' or '-'.
type lexIndex struct {
	entries []lexEntry
	seed    maphash.Seed
	// first maps a key hash to the head of its chain in links.
	first map[uint64]int32
	links []lexLink
	// byDomain maps a registrable domain to its entries.
	byDomain map[string][]int32
}

// lexLink is one entry under one key; next is the next link of the same
// key, or -1.
type lexLink struct {
	entry, next int32
}

func newLexIndex(entries []lexEntry) *lexIndex {
	ix := &lexIndex{
		entries:  entries,
		seed:     maphash.MakeSeed(),
		first:    make(map[uint64]int32, len(entries)*8),
		byDomain: make(map[string][]int32, len(entries)),
	}
	for i, e := range entries {
		if utf8.RuneCountInString(e.label) < 4 {
			continue // lookalikeOf never matches such entries
		}
		ix.byDomain[e.domain] = append(ix.byDomain[e.domain], int32(i))
		forEachKey(e.skeleton, func(key string) { ix.add(key, int32(i)) })
	}
	return ix
}

// forEachKey calls f with s and with every form of s that has one rune
// left out (repeats included; lookups deduplicate).
func forEachKey(s string, f func(string)) {
	f(s)
	buf := make([]byte, 0, len(s))
	for i, r := range s {
		buf = append(append(buf[:0], s[:i]...), s[i+utf8.RuneLen(r):]...)
		f(string(buf))
	}
}

func (ix *lexIndex) add(key string, entry int32) {
	h := maphash.String(ix.seed, key)
	head, ok := ix.first[h]
	if !ok {
		head = -1
	}
	if head >= 0 && ix.links[head].entry == entry {
		return // the same entry under a repeated key (a doubled letter)
	}
	ix.links = append(ix.links, lexLink{entry: entry, next: head})
	ix.first[h] = int32(len(ix.links) - 1)
}

// lookalikeIn is lookalikeOf over the index's entries.
func (p preparedDomain) lookalikeIn(ix *lexIndex) (lexEntry, string, bool) {
	if ix == nil || utf8.RuneCountInString(p.label) < 3 {
		return lexEntry{}, "", false
	}
	var cands []int32
	forEachKey(p.skeleton, func(key string) {
		for l, ok := ix.first[maphash.String(ix.seed, key)]; ok && l >= 0; l = ix.links[l].next {
			cands = append(cands, ix.links[l].entry)
		}
	})
	d := p.ascii
	for start := 0; start < len(d); start++ {
		if start > 0 && d[start-1] != '.' {
			continue
		}
		for end := start + 1; end < len(d); end++ {
			if d[end] == '.' || d[end] == '-' {
				cands = append(cands, ix.byDomain[d[start:end]]...)
			}
		}
	}
	if len(cands) == 0 {
		return lexEntry{}, "", false
	}
	slices.Sort(cands)
	cands = slices.Compact(cands)
	refs := make([]lexEntry, len(cands))
	for i, c := range cands {
		refs[i] = ix.entries[c]
	}
	return p.lookalikeOf(refs)
}

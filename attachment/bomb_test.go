package attachment_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/attachment"
)

// zerosDeflate is a raw deflate stream of n*258+1 zero bytes, written bit
// by bit with fixed Huffman codes (a literal 0, then n copies of "length
// 258, distance 1"), so that a gigabyte bomb costs milliseconds to make.
func zerosDeflate(n int) []byte {
	var out []byte
	var acc uint64
	var bits uint
	put := func(v uint64, nb uint) { // LSB-first
		acc |= v << bits
		bits += nb
		for bits >= 8 {
			out = append(out, byte(acc))
			acc >>= 8
			bits -= 8
		}
	}
	code := func(c uint64, nb uint) { // Huffman codes go MSB first
		var r uint64
		for i := uint(0); i < nb; i++ {
			r = r<<1 | (c>>i)&1
		}
		put(r, nb)
	}
	put(1, 1)     // BFINAL
	put(1, 2)     // BTYPE 01: fixed Huffman
	code(0x30, 8) // literal 0
	for range n {
		code(0xc5, 8) // length code 285: 258
		code(0, 5)    // distance code 0: 1
	}
	code(0, 7) // end of block
	if bits > 0 {
		out = append(out, byte(acc))
	}
	return out
}

// rawZip writes a one-entry zip by hand: deflated data, with the sizes in
// the local header or (descriptor) only after the data, as streaming
// writers do.
func rawZip(name string, data []byte, usize uint64, descriptor bool) []byte {
	var b bytes.Buffer
	le := func(v any) { binary.Write(&b, binary.LittleEndian, v) }
	flags := uint16(0)
	cs, us := uint32(len(data)), uint32(min(usize, 0xfffffffe))
	if descriptor {
		flags = 8
	}
	b.WriteString("PK\x03\x04")
	le(uint16(20))
	le(flags)
	le(uint16(8))
	le(uint32(0)) // time, date
	le(uint32(0)) // crc (not checked by the inspector)
	if descriptor {
		le(uint32(0))
		le(uint32(0))
	} else {
		le(cs)
		le(us)
	}
	le(uint16(len(name)))
	le(uint16(0))
	b.WriteString(name)
	b.Write(data)
	if descriptor {
		b.WriteString("PK\x07\x08")
		le(uint32(0))
		le(cs)
		le(us)
	}
	cd := b.Len()
	b.WriteString("PK\x01\x02")
	le(uint16(20))
	le(uint16(20))
	le(flags)
	le(uint16(8))
	le(uint32(0))
	le(uint32(0))
	le(cs)
	le(us)
	le(uint16(len(name)))
	le([6]uint16{})
	le(uint32(0))
	le(uint32(0))
	b.WriteString(name)
	end := b.Len()
	b.WriteString("PK\x05\x06")
	le([4]uint16{0, 0, 1, 1})
	le(uint32(end - cd))
	le(uint32(cd))
	le(uint16(0))
	return b.Bytes()
}

// TestZipBombs checks that bombs are decided within the limits: a finding
// that names the limit, in bounded time and memory.
func TestZipBombs(t *testing.T) {
	const gig = 1 << 30
	deflated := zerosDeflate(gig / 258)
	nested := zipOf(t, "payload.txt", []byte("deepest"))
	for i := range 20 {
		nested = zipOf(t, fmt.Sprintf("level%02d.zip", 20-i), nested)
	}
	var many []any
	for i := range 10000 {
		many = append(many, fmt.Sprintf("f%05d.txt", i), []byte("x"))
	}
	wide := storedZipOf(t, many...)

	limits := attachment.Limits{MaxDepth: 5, MaxEntries: 1000, MaxExpanded: 100 << 20, MaxTime: 2 * time.Second}
	tests := []struct {
		name string
		zip  []byte
		want []string
	}{
		{"1 GiB declared", rawZip("zeros.bin", deflated, gig, false), []string{attachment.ArchiveBomb, attachment.LimitReached}},
		{"1 GiB behind a data descriptor", rawZip("zeros.bin", deflated, gig, true), []string{attachment.ArchiveBomb, attachment.LimitReached}},
		{"20 levels deep", nested, []string{attachment.LimitReached}},
		{"10,000 entries", wide, []string{attachment.LimitReached}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg := message(attached("bomb.zip", "application/zip", tc.zip))
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			r := attachment.Inspect(bytes.NewReader(msg), limits)
			took := time.Since(start)
			runtime.ReadMemStats(&after)
			for _, id := range tc.want {
				if !r.Has(id) {
					t.Errorf("no %s finding: %v (incomplete %q)", id, r.Findings, r.Incomplete)
				}
			}
			if r.Incomplete == "" {
				t.Error("report does not say what was left uninspected")
			}
			if took > limits.MaxTime+time.Second {
				t.Errorf("took %s, limit %s", took, limits.MaxTime)
			}
			if r.Expanded > limits.MaxExpanded {
				t.Errorf("expanded %d bytes, limit %d", r.Expanded, limits.MaxExpanded)
			}
			// Allocation, not just what is live: the bomb's bytes must
			// pass through fixed buffers.
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 32<<20 {
				t.Errorf("allocated %d MiB inspecting it", alloc>>20)
			}
			t.Logf("%s: %v in %s, expanded %d, %s", tc.name, r.Findings, took, r.Expanded, r.Incomplete)
		})
	}
}

// TestTimeLimit: an inspection past max_time stops with a finding that
// says so.
func TestTimeLimit(t *testing.T) {
	msg := message(attached("many.zip", "application/zip", zipOf(t, "a.txt", bytes.Repeat([]byte("x"), 1<<20), "b.zip", zipOf(t, "c.txt", []byte("y")))))
	r := attachment.Inspect(bytes.NewReader(msg), attachment.Limits{MaxTime: time.Nanosecond})
	if !r.Has(attachment.LimitReached) || !strings.Contains(r.Incomplete, "inspection time limit") {
		t.Errorf("findings %v, incomplete %q: want the time limit", r.Findings, r.Incomplete)
	}
	// An entry declared past the budget is skipped, the next one still
	// inspected.
	big := rawZip("big.bin", zerosDeflate(1<<20), 258<<20+1, false)
	two := append(big[:bytes.Index(big, []byte("PK\x01\x02"))], zipOf(t, "after.exe", []byte("x"))...)
	r = attachment.Inspect(bytes.NewReader(message(attached("two.zip", "application/zip", two))), attachment.Limits{})
	if !r.Has(attachment.LimitReached) || !r.Has(attachment.ArchiveExecutable) || !r.Has(attachment.ArchiveBomb) {
		t.Errorf("entry past the budget, then an exe: %v", r.Findings)
	}
	// The same message within the default limits is inspected whole.
	if r := attachment.Inspect(bytes.NewReader(msg), attachment.Limits{}); r.Incomplete != "" || r.Files != 4 {
		t.Errorf("default limits: %d files, incomplete %q", r.Files, r.Incomplete)
	}
}

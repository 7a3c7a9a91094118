package scan

import (
	"bufio"
	"cmp"
	"container/heap"
	"encoding/binary"
	"encoding/gob"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/abusemilter/abusemilter/identity"
	"github.com/abusemilter/abusemilter/scoring"
)

// spool keeps the records of a --replay-rates scan on disk, so that the
// replay's memory follows the accounts and rate windows (the in-memory
// rate store's counters), not the number of messages: the records go to a
// temporary file in input order; the keys that order them by Date are
// sorted in runs of at most runSize in memory, each run written to a
// second file, and merged when replayed; each message's replay outcome
// goes to a fixed-size slot of a third file, read back when the records
// are reported in input order.
type spool struct {
	recs    *os.File // a gob stream of spooledRecords, in input order
	w       *bufio.Writer
	enc     *gob.Encoder
	entries *os.File // length-prefixed JSON replayEntries, by key
	entW    *bufio.Writer
	off     int64 // bytes written to entries
	n       int   // records written
	keys    []replayKey
	runs    *os.File // sorted runs of keys
	runW    *bufio.Writer
	spans   []runSpan // where each run lies in runs
	slots   *os.File  // one slotSize slot per record, by Seq
}

// runSize is how many keys are sorted in memory at once (24 bytes each).
const runSize = 1 << 16

// slotSize bounds the encoded replay outcome of one message.
const slotSize = 1024

// replayKey orders the replayed records: by Date, then input order.
type replayKey struct {
	date int64 // Date in Unix nanoseconds
	seq  int64 // record number in input order
	off  int64 // the record's replay entry's offset in the entries file
}

const keySize = 24

type runSpan struct{ off, n int64 }

// spooledRecord is what the report needs of a message.
type spooledRecord struct {
	Rec        *record
	How        identity.How
	HasAccount bool
}

// replayEntry is what the replay needs of a message: the envelope and
// identity it is charged with and the rules' findings without their
// reasons (the replay's verdicts keep no findings, see slot).
type replayEntry struct {
	Date      time.Time         `json:"d"`
	Account   string            `json:"a"`
	How       identity.How      `json:"h,omitempty"`
	Env       *scoring.Envelope `json:"e"`
	MessageID string            `json:"m,omitempty"`
	Findings  []scoring.Finding `json:"f,omitempty"`
	Score     float64           `json:"s,omitempty"`
	Where     string            `json:"w"`
}

// slot is a message's replay outcome: the final verdict without its
// findings (they are the rules' own, in the record) and the replay result.
type slot struct {
	Verdict scoring.Verdict `json:"v"`
	Replay  replayResult    `json:"r"`
}

// newSpool creates the spool's files in the temporary directory; they are
// removed at once and live as long as the open files.
func newSpool() (*spool, error) {
	s := &spool{keys: make([]replayKey, 0, 1024)}
	for _, f := range []**os.File{&s.recs, &s.entries, &s.runs, &s.slots} {
		tmp, err := os.CreateTemp("", "abusescan-replay-*")
		if err != nil {
			s.close()
			return nil, fmt.Errorf("replay spool: %w", err)
		}
		os.Remove(tmp.Name())
		*f = tmp
	}
	s.w = bufio.NewWriterSize(s.recs, 256<<10)
	s.enc = gob.NewEncoder(s.w)
	s.entW = bufio.NewWriterSize(s.entries, 64<<10)
	s.runW = bufio.NewWriterSize(s.runs, 64<<10)
	return s, nil
}

func (s *spool) close() {
	for _, f := range []*os.File{s.recs, s.entries, s.runs, s.slots} {
		if f != nil {
			f.Close()
		}
	}
}

// add writes a record, and its replay entry when the replay takes it
// (else its outcome is decided when it is reported, see skipReason).
func (s *spool) add(r *record) error {
	if err := s.enc.Encode(spooledRecord{Rec: r, How: r.id.How, HasAccount: r.id.Account != nil}); err != nil {
		return fmt.Errorf("replay spool: %w", err)
	}
	defer func() { s.n++ }()
	if skipReason(r) != "" {
		return nil
	}
	e := replayEntry{Date: r.Date, Account: r.id.Name(), How: r.id.How, Env: r.env, MessageID: r.MessageID,
		Findings: make([]scoring.Finding, len(r.Rules.Findings)), Score: r.Rules.Score, Where: r.where()}
	for i, f := range r.Rules.Findings {
		f.Reason = ""
		e.Findings[i] = f
	}
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("replay spool: %w", err)
	}
	var n [4]byte
	binary.LittleEndian.PutUint32(n[:], uint32(len(b)))
	if _, err := s.entW.Write(n[:]); err != nil {
		return fmt.Errorf("replay spool: %w", err)
	}
	if _, err := s.entW.Write(b); err != nil {
		return fmt.Errorf("replay spool: %w", err)
	}
	s.keys = append(s.keys, replayKey{date: r.Date.UnixNano(), seq: int64(s.n), off: s.off})
	s.off += int64(4 + len(b))
	if len(s.keys) >= runSize {
		return s.flushRun()
	}
	return nil
}

func compareKeys(a, b replayKey) int {
	if c := cmp.Compare(a.date, b.date); c != 0 {
		return c
	}
	return cmp.Compare(a.seq, b.seq)
}

// flushRun sorts the keys in memory and writes them as a run.
func (s *spool) flushRun() error {
	if len(s.keys) == 0 {
		return nil
	}
	slices.SortFunc(s.keys, compareKeys)
	start := int64(0)
	if len(s.spans) > 0 {
		last := s.spans[len(s.spans)-1]
		start = last.off + last.n*keySize
	}
	var b [keySize]byte
	for _, k := range s.keys {
		binary.LittleEndian.PutUint64(b[0:], uint64(k.date))
		binary.LittleEndian.PutUint64(b[8:], uint64(k.seq))
		binary.LittleEndian.PutUint64(b[16:], uint64(k.off))
		if _, err := s.runW.Write(b[:]); err != nil {
			return fmt.Errorf("replay spool: %w", err)
		}
	}
	s.spans = append(s.spans, runSpan{off: start, n: int64(len(s.keys))})
	s.keys = s.keys[:0]
	return nil
}

// finish ends writing.
func (s *spool) finish() error {
	if err := s.flushRun(); err != nil {
		return err
	}
	if err := s.runW.Flush(); err != nil {
		return fmt.Errorf("replay spool: %w", err)
	}
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("replay spool: %w", err)
	}
	if err := s.entW.Flush(); err != nil {
		return fmt.Errorf("replay spool: %w", err)
	}
	return nil
}

// entry decodes the replay entry at off.
func (s *spool) entry(off int64) (*replayEntry, error) {
	var n [4]byte
	if _, err := s.entries.ReadAt(n[:], off); err != nil {
		return nil, fmt.Errorf("replay spool: %w", err)
	}
	b := make([]byte, binary.LittleEndian.Uint32(n[:]))
	if _, err := s.entries.ReadAt(b, off+4); err != nil {
		return nil, fmt.Errorf("replay spool: %w", err)
	}
	var e replayEntry
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("replay spool: %w", err)
	}
	if e.Env == nil {
		e.Env = &scoring.Envelope{}
	}
	return &e, nil
}

// identity is the identity the entry is charged as: the replay charges by
// account name, the rules already ran.
func (e *replayEntry) identity() scoring.Identity {
	return scoring.Identity{Account: &identity.Account{Name: e.Account}, How: e.How}
}

// byDate calls f for every replayed record in Date order (ties in input
// order), merging the sorted runs, with the record's number in the spool.
func (s *spool) byDate(f func(e *replayEntry, n int) error) error {
	h := &keyHeap{}
	for _, sp := range s.spans {
		it := &runIter{r: bufio.NewReaderSize(io.NewSectionReader(s.runs, sp.off, sp.n*keySize), 4096)}
		if it.next() {
			heap.Push(h, it)
		} else if it.err != nil {
			return it.err
		}
	}
	for h.Len() > 0 {
		it := (*h)[0]
		e, err := s.entry(it.cur.off)
		if err != nil {
			return err
		}
		if err := f(e, int(it.cur.seq)); err != nil {
			return err
		}
		if it.next() {
			heap.Fix(h, 0)
		} else {
			if it.err != nil {
				return it.err
			}
			heap.Pop(h)
		}
	}
	return nil
}

// runIter reads one sorted run.
type runIter struct {
	r   *bufio.Reader
	cur replayKey
	err error
}

func (it *runIter) next() bool {
	var b [keySize]byte
	if _, err := io.ReadFull(it.r, b[:]); err != nil {
		if !errors.Is(err, io.EOF) {
			it.err = fmt.Errorf("replay spool: %w", err)
		}
		return false
	}
	it.cur = replayKey{
		date: int64(binary.LittleEndian.Uint64(b[0:])),
		seq:  int64(binary.LittleEndian.Uint64(b[8:])),
		off:  int64(binary.LittleEndian.Uint64(b[16:])),
	}
	return true
}

type keyHeap []*runIter

func (h keyHeap) Len() int           { return len(h) }
func (h keyHeap) Less(i, j int) bool { return compareKeys(h[i].cur, h[j].cur) < 0 }
func (h keyHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *keyHeap) Push(x any)        { *h = append(*h, x.(*runIter)) }
func (h *keyHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

// setOutcome stores the outcome of the spool's record n in its slot.
func (s *spool) setOutcome(n int, v scoring.Verdict, res *replayResult) error {
	v.Findings = nil
	if len(v.LimiterError) > 200 {
		v.LimiterError = v.LimiterError[:200]
	}
	b, err := json.Marshal(slot{Verdict: v, Replay: *res})
	if err != nil {
		return fmt.Errorf("replay spool: %w", err)
	}
	if len(b) > slotSize-4 {
		return fmt.Errorf("replay spool: outcome of %d bytes does not fit a slot", len(b))
	}
	buf := make([]byte, 4+len(b))
	binary.LittleEndian.PutUint32(buf, uint32(len(b)))
	copy(buf[4:], b)
	if _, err := s.slots.WriteAt(buf, int64(n)*slotSize); err != nil {
		return fmt.Errorf("replay spool: %w", err)
	}
	return nil
}

// outcome reads a message's slot; ok is false when it was not replayed.
func (s *spool) outcome(seq int) (v scoring.Verdict, res *replayResult, ok bool, err error) {
	var buf [slotSize]byte
	n, err := s.slots.ReadAt(buf[:], int64(seq)*slotSize)
	if n < 4 {
		if err == nil || errors.Is(err, io.EOF) {
			return v, nil, false, nil // past the end: never written
		}
		return v, nil, false, fmt.Errorf("replay spool: %w", err)
	}
	l := int(binary.LittleEndian.Uint32(buf[:4]))
	if l == 0 {
		return v, nil, false, nil
	}
	if 4+l > n {
		return v, nil, false, fmt.Errorf("replay spool: slot %d is cut", seq)
	}
	var sl slot
	if err := json.Unmarshal(buf[4:4+l], &sl); err != nil {
		return v, nil, false, fmt.Errorf("replay spool: %w", err)
	}
	return sl.Verdict, &sl.Replay, true, nil
}

// inOrder calls f for every record in input order, with its replay
// outcome filled in.
func (s *spool) inOrder(f func(r *record) error) error {
	if _, err := s.recs.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("replay spool: %w", err)
	}
	dec := gob.NewDecoder(bufio.NewReaderSize(s.recs, 256<<10))
	for n := 0; n < s.n; n++ {
		var sr spooledRecord
		if err := dec.Decode(&sr); err != nil {
			return fmt.Errorf("replay spool: %w", err)
		}
		r := sr.Rec
		r.id = scoring.Identity{How: sr.How}
		if sr.HasAccount {
			r.id.Account = &identity.Account{Name: r.Account}
		}
		v, res, ok, err := s.outcome(n)
		if err != nil {
			return err
		}
		if ok {
			v.Findings = r.Rules.Findings
			r.Verdict, r.Replay = v, res
		} else {
			r.Replay = &replayResult{Action: r.Rules.Action, Skipped: skipReason(r)}
		}
		if err := f(r); err != nil {
			return err
		}
	}
	return nil
}

// skipReason says why the replay passes a record over, "" when it
// replays it: no readable Date, or refused before the rules ran (unknown
// login or client: the milter does not call the limiter for it).
func skipReason(r *record) string {
	switch {
	case r.Date.IsZero():
		return "no readable Date header"
	case r.id.Account == nil || (r.Rules.Action != scoring.Accept && r.Rules.Clause == scoring.Policy):
		return "refused before the rules ran"
	}
	return ""
}

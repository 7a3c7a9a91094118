// Package attachment owns the look inside a message's attachments that
// needs no external service: it walks the MIME structure of a message as
// it streams (RFC 2045-2049: multipart nesting, base64 and
// quoted-printable decoding; file names from Content-Disposition and
// Content-Type with RFC 2231 parameters and RFC 2047 encoded words), sniffs
// each attachment's content by its magic bytes, and inspects archives (zip
// read as a stream of local headers and central directory entries,
// APPNOTE 6.3; gzip, RFC 1952; tar, POSIX ustar) and Office documents (OLE2
// compound files and OOXML packages) down to a bounded depth.
//
// Work is bounded: the message is read once, as a stream, and never held
// whole; each file looked at keeps at most a sniff buffer
// (SniffBytes) per nesting level; archive entries, nesting depth,
// decompressed bytes and inspection time are capped (Limits). Hitting a
// cap is itself a finding (LimitReached, or ArchiveBomb for an extreme
// compression ratio) that says what was left uninspected.
//
// The package reports observations with stable IDs (Finding.ID); scoring
// turns them into rule findings of the malware clause.
package attachment

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"
)

// Finding IDs. They are the rule IDs scoring uses for them.
const (
	// Executable is an executable or script attachment, by name or content.
	Executable = "ATTACH_EXECUTABLE"
	// DoubleExtension is a name such as invoice.pdf.exe.
	DoubleExtension = "ATTACH_DOUBLE_EXTENSION"
	// BidiName is a name with a right-to-left override or other bidi control.
	BidiName = "ATTACH_BIDI_NAME"
	// TypeMismatch is a declared type or extension that the content's magic
	// bytes contradict.
	TypeMismatch = "ATTACH_TYPE_MISMATCH"
	// ArchiveExecutable is an archive holding an executable or script.
	ArchiveExecutable = "ARCHIVE_EXECUTABLE"
	// ArchiveEncrypted is an archive with encrypted entries.
	ArchiveEncrypted = "ARCHIVE_ENCRYPTED"
	// ArchiveUninspected is an archive of a kind this package does not open
	// (rar, 7z, cab, ...).
	ArchiveUninspected = "ARCHIVE_UNINSPECTED"
	// ArchiveBomb is an entry that expands far beyond its compressed size.
	ArchiveBomb = "ARCHIVE_BOMB"
	// OfficeMacro is an Office document with a VBA project.
	OfficeMacro = "ATTACH_OFFICE_MACRO"
	// HTMLForm is an HTML attachment with a form that posts somewhere.
	HTMLForm = "ATTACH_HTML_FORM"
	// LimitReached says a limit stopped the inspection.
	LimitReached = "ATTACH_LIMIT"
)

// IDs lists every finding ID, in the order the rules are documented.
func IDs() []string {
	return []string{Executable, DoubleExtension, BidiName, TypeMismatch, ArchiveExecutable,
		ArchiveEncrypted, ArchiveUninspected, ArchiveBomb, OfficeMacro, HTMLForm, LimitReached}
}

// Limits bound the work done on one message. Zero fields take the defaults.
type Limits struct {
	// MaxDepth is the archive nesting inspected: 1 looks into archives
	// attached to the message, 2 into archives inside those, and so on.
	MaxDepth int
	// MaxEntries caps the archive entries looked at per message.
	MaxEntries int
	// MaxExpanded caps the bytes decompressed per message.
	MaxExpanded int64
	// MaxTime caps the time spent inspecting one message, not counting the
	// time spent waiting for its bytes to arrive.
	MaxTime time.Duration
	// MaxParts caps the MIME parts walked per message.
	MaxParts int
}

// Defaults for Limits fields left zero.
const (
	DefaultMaxDepth    = 5
	DefaultMaxEntries  = 1000
	DefaultMaxExpanded = 100 << 20
	DefaultMaxTime     = 2 * time.Second
	DefaultMaxParts    = 1000
	// SniffBytes is what is read of each file to tell its type (an ISO 9660
	// signature sits at 32769).
	SniffBytes = 40 << 10
	// bombRatio and bombMin: an entry that expanded past bombMin bytes at
	// more than bombRatio times its compressed size is a bomb.
	bombRatio = 100
	bombMin   = 8 << 20
	// maxHeaderBlock bounds a MIME header block read.
	maxHeaderBlock = 256 << 10
	// maxFindingsPerID keeps a report small whatever the message holds.
	maxFindingsPerID = 5
)

func (l Limits) withDefaults() Limits {
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = DefaultMaxEntries
	}
	if l.MaxExpanded <= 0 {
		l.MaxExpanded = DefaultMaxExpanded
	}
	if l.MaxTime <= 0 {
		l.MaxTime = DefaultMaxTime
	}
	if l.MaxParts <= 0 {
		l.MaxParts = DefaultMaxParts
	}
	return l
}

// Finding is one observation about one file of the message.
type Finding struct {
	ID string `json:"id"`
	// Path names the file: its name, or "archive.zip/dir/entry.exe" for an
	// archive entry ("(unnamed)" when the part has no name).
	Path string `json:"path"`
	// Detail says what was seen, e.g. "MZ executable declared application/pdf".
	Detail string `json:"detail"`
}

// String formats the finding for logs: "path: detail".
func (f Finding) String() string {
	if f.Detail == "" {
		return f.Path
	}
	return f.Path + ": " + f.Detail
}

// Report is what the inspection of one message found.
type Report struct {
	// Parts counts the MIME leaf parts walked; Files the attachments and
	// archive entries looked at.
	Parts, Files int
	// Expanded counts the bytes decompressed.
	Expanded int64
	// Elapsed is the inspection time (waiting for input not counted).
	Elapsed  time.Duration
	Findings []Finding
	// Incomplete says why part of the message was not inspected ("" when
	// all of it was); a LimitReached finding says the same.
	Incomplete string
	counts     map[string]int
}

// Has reports whether the report holds a finding with the ID.
func (r *Report) Has(id string) bool {
	if r == nil {
		return false
	}
	for _, f := range r.Findings {
		if f.ID == id {
			return true
		}
	}
	return false
}

// Describe joins the findings with the ID for a log line or reason, at most
// three of them: "a.exe: by name; b.scr: by name".
func (r *Report) Describe(id string) string {
	if r == nil {
		return ""
	}
	var parts []string
	n := 0
	for _, f := range r.Findings {
		if f.ID != id {
			continue
		}
		n++
		if len(parts) < 3 {
			parts = append(parts, f.String())
		}
	}
	s := strings.Join(parts, "; ")
	if n > len(parts) {
		s += fmt.Sprintf("; and %d more", n-len(parts))
	}
	return s
}

func (r *Report) add(id, path, format string, args ...any) {
	if r.counts == nil {
		r.counts = make(map[string]int)
	}
	r.counts[id]++
	if r.counts[id] > maxFindingsPerID {
		return
	}
	r.Findings = append(r.Findings, Finding{ID: id, Path: path, Detail: fmt.Sprintf(format, args...)})
}

// Errors that stop an inspection early; each becomes a LimitReached finding.
var (
	errDepth    = errors.New("nesting depth limit")
	errEntries  = errors.New("archive entry limit")
	errExpanded = errors.New("decompressed size limit")
	errTime     = errors.New("inspection time limit")
	errParts    = errors.New("MIME part limit")
)

// Inspect reads a raw message (header block, blank line, body) from r and
// reports on its attachments. r is read only as far as the inspection
// needs (not past the last MIME part, nor past a limit).
func Inspect(r io.Reader, limits Limits) *Report {
	in := newInspector(limits, &waitReader{r: r})
	in.run()
	return in.report
}

// Stream inspects a message written to it in chunks as it arrives, in
// bounded memory: the chunks go through a pipe to an inspector goroutine.
// Use it from one goroutine: Write the raw message (header block, blank
// line, body), then Finish, or Close to abandon it.
type Stream struct {
	pw       *io.PipeWriter
	done     chan struct{}
	in       *inspector
	finished bool
	// idle is set once the inspector needs no more input (a plain text
	// message, a limit hit): later writes skip the pipe.
	idle atomic.Bool
}

// NewStream starts the inspection of one message.
func NewStream(limits Limits) *Stream {
	pr, pw := io.Pipe()
	s := &Stream{pw: pw, done: make(chan struct{})}
	s.in = newInspector(limits, &waitReader{r: pr})
	go func() {
		defer close(s.done)
		s.in.run()
		// The inspector may stop early (nothing left to inspect, a
		// limit): later writes skip the pipe, and one in flight is
		// drained, so that Write never blocks. (io.Discard reads with
		// a pooled buffer: no allocation per message.)
		s.idle.Store(true)
		_, _ = io.Copy(io.Discard, pr)
	}()
	return s
}

// Write feeds the next bytes of the raw message.
func (s *Stream) Write(p []byte) (int, error) {
	if s.finished {
		return 0, errors.New("attachment stream: write after finish")
	}
	if s.idle.Load() {
		return len(p), nil
	}
	return s.pw.Write(p)
}

// Finish ends the message and returns the report.
func (s *Stream) Finish() *Report {
	if !s.finished {
		s.finished = true
		s.pw.Close()
	}
	<-s.done
	return s.in.report
}

// Close abandons the inspection.
func (s *Stream) Close() {
	if !s.finished {
		s.finished = true
		s.pw.CloseWithError(errors.New("attachment stream abandoned"))
	}
	<-s.done
}

// waitReader is the inspector's input: it counts the time spent waiting
// for bytes, which the time limit does not count.
type waitReader struct {
	r      io.Reader
	waited time.Duration
}

func (w *waitReader) Read(p []byte) (int, error) {
	start := time.Now()
	n, err := w.r.Read(p)
	w.waited += time.Since(start)
	return n, err
}

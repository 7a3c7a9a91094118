package mailbox

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"os"
	"path/filepath"
	"sort"

	"github.com/abusemilter/abusemilter/scoring"
)

// Walk reads every input in order and yields its messages and problems, one
// at a time. An input is "-" (read from stdin), a file (a message, an mbox,
// or either gzip-compressed), a Maildir folder or a directory walked
// recursively in lexical order (Maildir folders inside are recognised, and
// only their cur/ and new/ entries read). Walk stops early when ctx ends or
// the consumer stops ranging.
func Walk(ctx context.Context, inputs []string, stdin io.Reader, opts Options) iter.Seq[Entry] {
	opts.defaults()
	return func(yield func(Entry) bool) {
		w := &walker{ctx: ctx, opts: &opts, yield: yield}
		for _, in := range inputs {
			if !w.input(in, stdin) {
				return
			}
		}
	}
}

// ReadStream yields the messages of one stream (a message, an mbox, or
// either gzip-compressed) named name in reports.
func ReadStream(ctx context.Context, name string, r io.Reader, opts Options) iter.Seq[Entry] {
	opts.defaults()
	return func(yield func(Entry) bool) {
		w := &walker{ctx: ctx, opts: &opts, yield: yield}
		w.stream(name, r, EML)
	}
}

type walker struct {
	ctx   context.Context // lives only for one Walk call
	opts  *Options
	yield func(Entry) bool
}

func (w *walker) problem(p *Problem) bool {
	if w.ctx.Err() != nil {
		return false
	}
	return w.yield(Entry{Problem: p})
}

func (w *walker) input(path string, stdin io.Reader) bool {
	if path == "-" {
		if stdin == nil {
			return w.problem(&Problem{Source: "-", Kind: ReadFailed, Err: errors.New("no standard input")})
		}
		return w.stream("-", stdin, EML)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return w.problem(&Problem{Source: path, Kind: ReadFailed, Err: err})
	}
	if fi.IsDir() {
		return w.dir(path)
	}
	return w.file(path, EML)
}

// isMaildir reports whether a directory listing has at least two of a
// Maildir's cur/, new/ and tmp/ folders.
func isMaildir(entries []fs.DirEntry) bool {
	n := 0
	for _, e := range entries {
		switch e.Name() {
		case "cur", "new", "tmp":
			if e.IsDir() {
				n++
			}
		}
	}
	return n >= 2
}

func (w *walker) dir(path string) bool {
	entries, err := os.ReadDir(path)
	if err != nil {
		return w.problem(&Problem{Source: path, Kind: ReadFailed, Err: err})
	}
	if isMaildir(entries) {
		for _, sub := range []string{"cur", "new"} {
			files, err := os.ReadDir(filepath.Join(path, sub))
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				if !w.problem(&Problem{Source: filepath.Join(path, sub), Kind: ReadFailed, Err: err}) {
					return false
				}
				continue
			}
			sort.Slice(files, func(i, j int) bool { return files[i].Name() < files[j].Name() })
			for _, f := range files {
				if f.IsDir() || f.Name()[0] == '.' {
					continue
				}
				if !w.file(filepath.Join(path, sub, f.Name()), Maildir) {
					return false
				}
			}
		}
		// Maildir++ subfolders (.Sent, .Junk) are Maildirs of their own;
		// the Maildir's own files (dovecot-uidlist, indexes) are not mail.
		for _, e := range entries {
			if name := e.Name(); e.IsDir() && name != "cur" && name != "new" && name != "tmp" {
				if !w.dir(filepath.Join(path, name)) {
					return false
				}
			}
		}
		return true
	}
	for _, e := range entries {
		p := filepath.Join(path, e.Name())
		switch {
		case e.IsDir():
			if !w.dir(p) {
				return false
			}
		case e.Type().IsRegular():
			if !w.file(p, EML) {
				return false
			}
		case e.Type()&fs.ModeSymlink != 0:
			// Follow links to files only: links to directories may loop.
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
				if !w.file(p, EML) {
					return false
				}
			}
		}
	}
	return true
}

func (w *walker) file(path string, single Format) bool {
	f, err := os.Open(path)
	if err != nil {
		return w.problem(&Problem{Source: path, Kind: ReadFailed, Err: err})
	}
	defer f.Close()
	return w.stream(path, f, single)
}

// countingReader reports consumed bytes to Options.OnRead.
type countingReader struct {
	r      io.Reader
	onRead func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.onRead(int64(n))
	}
	return n, err
}

const readBufSize = 64 << 10

// stream detects what r holds and yields its messages. single is the
// format given to a one-message stream (EML or Maildir).
func (w *walker) stream(name string, r io.Reader, single Format) bool {
	if w.opts.OnRead != nil {
		r = &countingReader{r: r, onRead: w.opts.OnRead}
	}
	br := bufio.NewReaderSize(r, readBufSize)
	head, err := br.Peek(512)
	if len(head) == 0 {
		if err != nil && !errors.Is(err, io.EOF) {
			return w.problem(&Problem{Source: name, Kind: ReadFailed, Err: err})
		}
		return w.problem(&Problem{Source: name, Kind: Empty, Err: errors.New("empty file")})
	}
	if len(head) >= 2 && head[0] == 0x1f && head[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return w.problem(&Problem{Source: name, Kind: ReadFailed, Err: fmt.Errorf("gzip: %w", err)})
		}
		defer gz.Close()
		br = bufio.NewReaderSize(gz, readBufSize)
		head, err = br.Peek(512)
		if len(head) == 0 {
			if err != nil && !errors.Is(err, io.EOF) {
				return w.problem(&Problem{Source: name, Kind: ReadFailed, Err: fmt.Errorf("gzip: %w", err)})
			}
			return w.problem(&Problem{Source: name, Kind: Empty, Err: errors.New("empty after gzip decompression")})
		}
	}
	if bytes.IndexByte(head, 0) >= 0 {
		return w.problem(&Problem{Source: name, Kind: Binary, Err: errors.New("not a mail message or mailbox (binary data)")})
	}
	// "From : x" (whitespace before the colon, RFC 5322 section 4.5.3)
	// is a header field, not an mbox From_ line.
	isMbox := bytes.HasPrefix(head, fromPrefix) && !startsWithHeader(head)
	if !isMbox && !startsWithHeader(head) {
		return w.problem(&Problem{Source: name, Kind: NoHeaders, Err: errors.New("not a mail message or mailbox (the first line is neither a header nor an mbox From_ line)")})
	}
	s := newSplitter(br, name, isMbox, w.opts)
	for {
		m, p, err := s.next()
		if errors.Is(err, io.EOF) {
			return true
		}
		if w.ctx.Err() != nil {
			if m.Sink != nil {
				m.Sink.Close()
			}
			return false
		}
		if !isMbox {
			m.Format = single
		}
		if p != nil && !w.yield(Entry{Problem: p}) {
			if m.Sink != nil {
				m.Sink.Close()
			}
			return false
		}
		if !w.yield(Entry{Message: m}) {
			return false
		}
	}
}

// startsWithHeader reports whether b begins with a header field as the
// scanner's header reader and the MTAs read one (scoring.FieldName): a
// name of printable ASCII other than ':', optional spaces and tabs, ':'.
func startsWithHeader(b []byte) bool {
	return isField(b)
}

// isField reports whether the line at the start of b is a header field.
func isField(b []byte) bool {
	if nl := bytes.IndexByte(b, '\n'); nl >= 0 {
		b = b[:nl]
	}
	_, _, ok := scoring.FieldName(string(b))
	return ok
}

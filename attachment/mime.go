package attachment

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/text/encoding/htmlindex"
)

// inspector walks one message. It runs on one goroutine.
type inspector struct {
	lim    Limits
	in     *waitReader
	report *Report
	start  time.Time
	// entries counts archive entries; stop is the first limit hit, after
	// which nothing more is inspected.
	entries int
	stop    error
	// bufs are the sniff buffers, one per nesting level (a level's head
	// is read from its buffer while deeper levels are inspected);
	// skipBuf is where skipped bytes go.
	bufs    [][]byte
	skipBuf []byte
}

func newInspector(l Limits, in *waitReader) *inspector {
	return &inspector{lim: l.withDefaults(), in: in, report: &Report{}}
}

// messageReaders holds the buffered readers over whole messages, one per
// inspection at a time: a new 8 KiB reader per message was a tenth of the
// daemon's garbage per message. Nothing read through one outlives run
// (header values are copied into strings; archives read through readers
// of their own).
var messageReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 8<<10) }}

// run walks the message and fills the report.
func (in *inspector) run() {
	in.start = time.Now()
	defer func() {
		in.report.Elapsed = in.elapsed()
		if p := recover(); p != nil {
			// A malformed message must not take the caller down; what was
			// found so far stands.
			in.report.Incomplete = fmt.Sprintf("inspection stopped: %v", p)
		}
	}()
	br := messageReaders.Get().(*bufio.Reader)
	br.Reset(in.in)
	defer func() {
		br.Reset(nil)
		messageReaders.Put(br)
	}()
	h, err := readHeader(br)
	if err != nil {
		in.report.Incomplete = "header block: " + err.Error()
		return
	}
	in.entity(h, br, 0)
	if in.stop != nil {
		in.limit(in.stop, "")
	}
}

// elapsed is the inspection time, waiting for input not counted.
func (in *inspector) elapsed() time.Duration { return time.Since(in.start) - in.in.waited }

// check returns the limit error once the time is up or another limit hit.
func (in *inspector) check() error {
	if in.stop == nil && in.elapsed() > in.lim.MaxTime {
		in.stop = errTime
	}
	return in.stop
}

// limit records the first limit hit.
func (in *inspector) limit(err error, path string) {
	if in.report.Incomplete != "" {
		return
	}
	detail := err.Error()
	switch {
	case errors.Is(err, errDepth):
		detail = fmt.Sprintf("%s (%d) reached: deeper archives not inspected", err, in.lim.MaxDepth)
	case errors.Is(err, errEntries):
		detail = fmt.Sprintf("%s (%d) reached: later entries not inspected", err, in.lim.MaxEntries)
	case errors.Is(err, errExpanded):
		detail = fmt.Sprintf("%s (%d bytes) reached: the rest not inspected", err, in.lim.MaxExpanded)
	case errors.Is(err, errTime):
		detail = fmt.Sprintf("%s (%s) reached: the rest not inspected", err, in.lim.MaxTime)
	case errors.Is(err, errParts):
		detail = fmt.Sprintf("%s (%d) reached: later parts not inspected", err, in.lim.MaxParts)
	}
	if path == "" {
		path = "(message)"
	}
	in.report.Incomplete = path + ": " + detail
	in.report.add(LimitReached, path, "%s", detail)
}

// header is the part of a MIME header block the walker reads.
type header struct {
	contentType, encoding, disposition string
}

// readHeader reads a header block up to its blank line, tolerantly: LF or
// CRLF, a leading mbox "From " line, lines that are not fields skipped.
func readHeader(br *bufio.Reader) (header, error) {
	var h header
	var name, value string
	size := 0
	flush := func() {
		switch strings.ToLower(name) {
		case "content-type":
			h.contentType = value
		case "content-transfer-encoding":
			h.encoding = value
		case "content-disposition":
			h.disposition = value
		}
		name, value = "", ""
	}
	first := true
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer: skip the rest of it.
			for errors.Is(err, bufio.ErrBufferFull) {
				size += len(line)
				_, err = br.ReadSlice('\n')
			}
			line = nil
		}
		size += len(line)
		if size > maxHeaderBlock {
			flush()
			return h, nil
		}
		t := bytes.TrimRight(line, "\r\n")
		if len(t) == 0 {
			flush()
			if err != nil && len(line) == 0 && first {
				return h, err
			}
			return h, nil
		}
		switch {
		case first && bytes.HasPrefix(t, []byte("From ")):
		case t[0] == ' ' || t[0] == '\t':
			if name != "" && len(value) < 64<<10 {
				value += " " + strings.TrimSpace(string(t))
			}
		default:
			flush()
			if i := bytes.IndexByte(t, ':'); i > 0 {
				name, value = strings.TrimSpace(string(t[:i])), strings.TrimSpace(string(t[i+1:]))
			}
		}
		first = false
		if err != nil {
			flush()
			return h, nil
		}
	}
}

// mediaType parses a Content-Type or Content-Disposition value tolerantly:
// the lowercase type and its parameters (RFC 2231 decoded); a value Go's
// parser refuses still gives its type and a name parameter when one can be
// read.
func mediaType(v string) (string, map[string]string) {
	t, params, err := mime.ParseMediaType(v)
	if err == nil {
		return t, params
	}
	t, _, _ = strings.Cut(v, ";")
	params = map[string]string{}
	for _, m := range looseParam.FindAllStringSubmatch(v, -1) {
		key := strings.ToLower(m[1])
		val := m[2]
		if val == "" {
			val = m[3]
		}
		if _, ok := params[key]; !ok {
			params[key] = val
		}
	}
	return strings.ToLower(strings.TrimSpace(t)), params
}

var looseParam = regexp.MustCompile(`(?i);\s*(name|filename|boundary)\s*=\s*(?:"([^"]*)"|([^;\s]*))`)

// wordDecoder decodes RFC 2047 encoded words, which many mailers put in
// file names although RFC 2047 section 5 forbids it there.
var wordDecoder = &mime.WordDecoder{CharsetReader: func(charset string, input io.Reader) (io.Reader, error) {
	enc, err := htmlindex.Get(strings.ToLower(charset))
	if err != nil {
		return nil, fmt.Errorf("unknown charset %q", charset)
	}
	return enc.NewDecoder().Reader(input), nil
}}

// fileName is the part's file name: Content-Disposition's filename, else
// Content-Type's name, encoded words decoded.
func fileName(dispParams, typeParams map[string]string) string {
	name := dispParams["filename"]
	if name == "" {
		name = typeParams["name"]
	}
	if strings.Contains(name, "=?") {
		if d, err := wordDecoder.DecodeHeader(name); err == nil {
			name = d
		}
	}
	return strings.TrimSpace(name)
}

// entity walks one MIME entity whose header is h and body is r.
func (in *inspector) entity(h header, r io.Reader, depth int) {
	if in.check() != nil {
		return
	}
	ctype, tparams := mediaType(h.contentType)
	if ctype == "" {
		ctype = "text/plain"
	}
	switch {
	case strings.HasPrefix(ctype, "multipart/"):
		if depth >= 50 {
			return
		}
		boundary := tparams["boundary"]
		if boundary == "" {
			return
		}
		mr := multipart.NewReader(r, boundary)
		for {
			p, err := mr.NextRawPart()
			if err != nil {
				return
			}
			in.report.Parts++
			if in.report.Parts > in.lim.MaxParts {
				in.stop = errParts
				return
			}
			in.entity(header{
				contentType: p.Header.Get("Content-Type"),
				encoding:    p.Header.Get("Content-Transfer-Encoding"),
				disposition: p.Header.Get("Content-Disposition"),
			}, p, depth+1)
			if in.stop != nil {
				return
			}
		}
	case ctype == "message/rfc822" || ctype == "message/global":
		if depth >= 50 {
			return
		}
		br := bufio.NewReaderSize(DecodeTransfer(h.encoding, r), 4<<10)
		nh, err := readHeader(br)
		if err != nil {
			return
		}
		in.entity(nh, br, depth+1)
	default:
		disp, dparams := mediaType(h.disposition)
		name := fileName(dparams, tparams)
		attached := name != "" || disp == "attachment" || !strings.HasPrefix(ctype, "text/")
		if !attached {
			return // a text body: nothing to inspect
		}
		in.report.Parts++
		in.file(file{name: name, path: orUnnamed(name), declared: ctype, depth: 0}, DecodeTransfer(h.encoding, r))
	}
}

func orUnnamed(name string) string {
	if name == "" {
		return "(unnamed)"
	}
	return name
}

// DecodeTransfer undoes a Content-Transfer-Encoding (base64, tolerant of
// folding and stray bytes, or quoted-printable) as r streams; any other
// encoding is returned as it is. The complaint reader uses it too.
func DecodeTransfer(cte string, r io.Reader) io.Reader {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "base64":
		return base64.NewDecoder(base64.StdEncoding, &base64Filter{r: r})
	case "quoted-printable":
		return quotedprintable.NewReader(r)
	}
	return r
}

// base64Filter keeps only base64 alphabet bytes and padding (line ends,
// spaces and the junk some mailers add are dropped), so that the decoder
// sees one clean stream.
type base64Filter struct{ r io.Reader }

func (f *base64Filter) Read(p []byte) (int, error) {
	for {
		n, err := f.r.Read(p)
		k := 0
		for _, c := range p[:n] {
			if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=' {
				p[k] = c
				k++
			}
		}
		if k > 0 {
			return k, nil
		}
		if err != nil {
			return 0, err
		}
	}
}

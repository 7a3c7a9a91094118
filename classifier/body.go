package classifier

// The body scanner: MIME parts followed by their boundaries, quoted-
// printable and base64 text decoded, HTML tags taken out, links.

import (
	"bytes"
	"encoding/base64"
	"slices"
	"strings"
)

// Body scanning states: in the text of a part, in a part's header block,
// in a part that is not text (skipped).
const (
	inText = iota
	inPartHeader
	inSkipped
)

// body emits the tokens of the body sample: the words of its text parts
// (quoted-printable and base64 decoded, HTML tags taken out and their
// names emitted), the MIME types of its parts and its links. It is a line
// scanner, not a MIME parser: it follows boundaries ("--" lines) and part
// headers, and never fails.
func (t *tokenizer) body(body []byte) {
	body = body[:min(len(body), maxBodyScan)]
	state, qp, b64 := inText, t.topQP, t.topB64
	if !t.topText {
		state = inSkipped
	}
	// The part header being read: its Content-Type (folded lines joined),
	// whether it is text, its encoding.
	partText, partQP, partB64, inCT := true, false, false, false
	endPartHeader := func() {
		if inCT {
			partText = t.contentType(string(t.s.ct))
			inCT = false
		}
	}
	t.s.b64 = t.s.b64[:0]
	for line := range bytes.Lines(body) {
		l := trimEOL(line)
		if state != inPartHeader && t.isBoundary(l) {
			t.flushBase64()
			t.flushLine()
			state, partText, partQP, partB64 = inPartHeader, true, false, false
			continue
		}
		switch state {
		case inPartHeader:
			if len(bytes.TrimSpace(l)) == 0 {
				endPartHeader()
				state, qp, b64 = inText, partQP, partB64
				if !partText {
					state = inSkipped
				}
				continue
			}
			if l[0] == ' ' || l[0] == '\t' {
				if inCT && len(t.s.ct) < maxPendingLine {
					t.s.ct = append(t.s.ct, l...)
				}
				continue
			}
			endPartHeader()
			name, value, ok := bytes.Cut(l, []byte(":"))
			if !ok {
				continue
			}
			switch {
			case bytes.EqualFold(bytes.TrimSpace(name), []byte("Content-Type")):
				t.s.ct, inCT = append(t.s.ct[:0], value...), true
			case bytes.EqualFold(bytes.TrimSpace(name), []byte("Content-Transfer-Encoding")):
				enc := bytes.TrimSpace(value)
				partQP = bytes.EqualFold(enc, []byte("quoted-printable"))
				partB64 = bytes.EqualFold(enc, []byte("base64"))
			}
		case inText:
			switch {
			case b64:
				t.s.b64 = append(t.s.b64, bytes.TrimSpace(l)...)
			case qp:
				if !t.decodeQP(l) || len(t.s.line) > maxPendingLine {
					t.flushLine()
				}
			default:
				t.text(l)
			}
		}
	}
	t.flushBase64()
	t.flushLine()
}

// trimEOL removes a line's LF and CRs before it.
func trimEOL(l []byte) []byte {
	for len(l) > 0 && (l[len(l)-1] == '\n' || l[len(l)-1] == '\r') {
		l = l[:len(l)-1]
	}
	return l
}

// maxBoundaries bounds the multipart boundaries followed per message.
const maxBoundaries = 4

// isBoundary reports whether a line is "--" and one of the boundaries the
// message's Content-Type fields declared.
func (t *tokenizer) isBoundary(l []byte) bool {
	if len(l) < 3 || l[0] != '-' || l[1] != '-' {
		return false
	}
	for _, b := range t.s.bounds {
		if len(l)-2 >= len(b) && string(l[2:2+len(b)]) == b {
			return true
		}
	}
	return false
}

// boundary remembers the boundary parameter of a multipart Content-Type.
func (t *tokenizer) boundary(params string) {
	i := indexFold(params, "boundary=")
	if i < 0 || len(t.s.bounds) >= maxBoundaries {
		return
	}
	b := params[i+len("boundary="):]
	if strings.HasPrefix(b, `"`) {
		b = b[1:]
		if end := strings.IndexByte(b, '"'); end >= 0 {
			b = b[:end]
		}
	} else if end := strings.IndexAny(b, "; \t\n"); end >= 0 {
		b = b[:end]
	}
	if b != "" {
		t.s.bounds = append(t.s.bounds, b)
	}
}

// flushBase64 decodes the pending base64 text and tokenizes it.
func (t *tokenizer) flushBase64() {
	if len(t.s.b64) < 4 {
		t.s.b64 = t.s.b64[:0]
		return
	}
	n := len(t.s.b64) / 4 * 4
	t.s.dec = slices.Grow(t.s.dec[:0], base64.StdEncoding.DecodedLen(n))[:base64.StdEncoding.DecodedLen(n)]
	m, _ := base64.StdEncoding.Decode(t.s.dec, t.s.b64[:n])
	t.s.b64 = t.s.b64[:0]
	for line := range bytes.Lines(t.s.dec[:m]) {
		t.text(line)
	}
}

// decodeQP appends a quoted-printable line, decoded, to the pending
// line and reports whether it ended in a soft line break (the text goes
// on in the next line). A bad escape is kept as it is.
func (t *tokenizer) decodeQP(l []byte) (soft bool) {
	out := t.s.line
	for i := 0; i < len(l); i++ {
		c := l[i]
		if c == '=' {
			if i+2 < len(l) && unhex(l[i+1]) >= 0 && unhex(l[i+2]) >= 0 {
				out = append(out, byte(unhex(l[i+1])<<4|unhex(l[i+2])))
				i += 2
				continue
			}
			if len(bytes.TrimRight(l[i+1:], " \t")) == 0 {
				t.s.line = out
				return true
			}
		}
		out = append(out, c)
	}
	t.s.line = out
	return false
}

// maxPendingLine bounds a quoted-printable line joined over soft breaks.
const maxPendingLine = 4 << 10

// flushLine tokenizes the pending quoted-printable line.
func (t *tokenizer) flushLine() {
	if len(t.s.line) > 0 {
		t.text(t.s.line)
		t.s.line = t.s.line[:0]
	}
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	}
	return -1
}

// text tokenizes one line of decoded text: its links, the names of its
// HTML tags and the words outside the tags. A tag may go on over line
// ends.
func (t *tokenizer) text(l []byte) {
	t.links(l)
	for len(l) > 0 {
		if !t.inTag {
			lt := tagStart(l)
			if lt < 0 {
				words(t, pWord, l)
				return
			}
			words(t, pWord, l[:lt])
			t.inTag, t.tagName = true, true
			l = l[lt+1:]
			continue
		}
		if t.tagName {
			n := 0
			for n < len(l) && (wordTable[l[n]] != 0 || n == 0 && l[n] == '/') {
				n++
			}
			t.tag(l[:n])
			t.tagName = false
			l = l[n:]
		}
		gt := bytes.IndexByte(l, '>')
		if gt < 0 {
			return
		}
		t.inTag = false
		l = l[gt+1:]
	}
}

// tagStart returns the index of the first '<' in l that starts an HTML
// tag (followed by a letter, '/' or '!'), or -1.
func tagStart(l []byte) int {
	off := 0
	for {
		i := bytes.IndexByte(l[off:], '<')
		if i < 0 {
			return -1
		}
		i += off
		if i+1 < len(l) {
			if c := lowerTable[l[i+1]]; c == '/' || c == '!' || 'a' <= c && c <= 'z' {
				return i
			}
		}
		off = i + 1
	}
}

// tag emits an HTML tag name ("/a" for the end tag of "a").
func (t *tokenizer) tag(name []byte) {
	if len(name) > 0 && len(name) <= 12 {
		t.s.add(hash(pTag, name))
	}
}

// links emits the host, registrable domain and first path segment of
// every http(s) link in a line.
func (t *tokenizer) links(l []byte) {
	for t.nURLs < maxURLs {
		j := bytes.Index(l, []byte("://"))
		if j < 0 {
			return
		}
		scheme := j >= 4 && bytes.EqualFold(l[j-4:j], []byte("http")) || j >= 5 && bytes.EqualFold(l[j-5:j], []byte("https"))
		l = l[j+3:]
		if !scheme {
			continue
		}
		end := 0
		for end < len(l) && hostEnd[l[end]] == 0 {
			end++
		}
		auth := l[:end]
		l = l[end:]
		if len(auth) == 0 || len(auth) > 255 {
			continue
		}
		t.nURLs++
		if at := bytes.LastIndexByte(auth, '@'); at >= 0 {
			t.str(pURLKind, "userinfo")
			auth = auth[at+1:]
		}
		if c := bytes.LastIndexByte(auth, ':'); c >= 0 && bytes.IndexByte(auth, ']') < c {
			t.str(pURLKind, "port")
			auth = auth[:c]
		}
		auth = bytes.TrimSuffix(auth, []byte("."))
		if isIPLiteral(auth) {
			t.str(pURLKind, "ip")
		} else {
			t.s.add(hash(pURLHost, auth))
			t.domain(pURLDomain, string(auth))
		}
		if len(l) > 1 && l[0] == '/' {
			p := l[1:]
			seg := 0
			for seg < len(p) && seg <= maxWordLen && (isWordByte(p[seg]) || p[seg] == '-' || p[seg] == '_' || p[seg] == '.') {
				seg++
			}
			if seg > 0 && seg <= maxWordLen {
				t.s.add(hash(pURLPath, p[:seg]))
			}
		}
	}
}

// hostEnd marks the bytes that end a link's authority part.
var hostEnd = func() (t [256]byte) {
	for _, c := range []byte("/?#\"'<> \t\r\n)]\\") {
		t[c] = 1
	}
	return t
}()

// isIPLiteral reports whether a host is an IPv4 address or an IPv6
// literal in brackets.
func isIPLiteral(h []byte) bool {
	if len(h) > 0 && h[0] == '[' {
		return true
	}
	for _, c := range h {
		if !(c >= '0' && c <= '9' || c == '.') {
			return false
		}
	}
	return len(h) > 0
}

package classifier

import (
	"bytes"
	"encoding/base64"
	"slices"
	"strings"

	"golang.org/x/net/publicsuffix"

	"github.com/abusemilter/abusemilter/scoring"
)

// TokenizerVersion names the tokenizer below. A model records the version
// it was trained with and Load refuses a model of another version: the
// same hashed bucket must mean the same token in training and scoring.
const TokenizerVersion = 1

// Bounds on the work done per message, so that scoring stays within its
// time budget whatever the message: the body bytes read (the engine's
// sample may be larger), the links looked at, and a word's length.
const (
	maxBodyScan = 24 << 10
	maxURLs     = 40
	maxWordLen  = 24
	minWordLen  = 2
)

// Token prefixes say where a token came from, so that "paypal" in the
// Subject and in a link's host are different features.
const (
	pSubject     = 's' // a word of the decoded Subject
	pFromName    = 'n' // a word of the From display name
	pFromDomain  = 'f' // the From address's domain and its registrable domain
	pContentType = 'c' // the media type of the message or of a MIME part
	pCharset     = 'e' // a charset parameter
	pEncoding    = 't' // a Content-Transfer-Encoding
	pMailer      = 'm' // a word of X-Mailer or User-Agent ("-" when neither)
	pReplyTo     = 'r' // the Reply-To domain ("same" when it is From's)
	pWord        = 'w' // a word of the body text (HTML tags removed)
	pTag         = 'g' // an HTML tag name
	pURLHost     = 'h' // a link's host
	pURLDomain   = 'd' // a link's registrable domain
	pURLPath     = 'p' // a link's first path segment
	pURLKind     = 'k' // a link's kind: IP literal, port, userinfo
	pShape       = 'x' // the message's shape: no Subject, no MIME-Version
)

// features fills s.set with the feature buckets of msg's tokens, each
// once. It hashes bytes where they lie and keeps its state in s, so that
// it does not allocate per token. The headers come first: they set what
// the body is.
func features(msg *scoring.Message, s *scratch) {
	s.reset()
	t := tokenizer{s: s}
	t.headers(msg)
	t.body(msg.Body)
}

// scratch is the reusable memory of one tokenization: the set of buckets
// seen (a bitmap and the list of its set bits) and decoding buffers.
type scratch struct {
	mask uint64   // buckets - 1
	bits []uint64 // one bit per bucket
	set  []uint32 // the buckets whose bit is set, in order of first sight

	line   []byte   // a decoded line
	bounds []string // the multipart boundaries declared so far
	ct     []byte   // a MIME part's Content-Type, folded lines joined
	b64    []byte   // pending base64 text
	dec    []byte   // decoded base64
}

func newScratch(buckets int) *scratch {
	return &scratch{mask: uint64(buckets - 1), bits: make([]uint64, (buckets+63)/64)}
}

// reset empties the set, clearing only the bits that are set.
func (s *scratch) reset() {
	for _, b := range s.set {
		s.bits[b/64] = 0
	}
	s.set = s.set[:0]
	s.bounds = s.bounds[:0]
	s.line = s.line[:0]
}

// bucket maps a token hash to its feature bucket.
func (s *scratch) bucket(h uint64) uint32 { return uint32((h ^ h>>32) & s.mask) }

// add records the bucket of a token hash.
func (s *scratch) add(h uint64) {
	b := s.bucket(h)
	if w, bit := b/64, uint64(1)<<(b%64); s.bits[w]&bit == 0 {
		s.bits[w] |= bit
		s.set = append(s.set, b)
	}
}

type tokenizer struct {
	s *scratch
	// inTag carries an HTML tag open across a line end; tagName collects
	// its name.
	inTag   bool
	tagName bool
	nURLs   int
	// The message's own Content-Type and -Transfer-Encoding (headers sets
	// them for body): text to read, quoted-printable, base64.
	topText, topQP, topB64 bool
}

// FNV-1a, 64 bits.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// lowerTable maps every byte to itself with ASCII letters lowercased;
// wordTable tells word bytes (see isWordByte): 2 for a digit, 1 for the
// others. Lookups are the tokenizer's inner loop.
var lowerTable, wordTable = func() (l, w [256]byte) {
	for i := range 256 {
		c := byte(i)
		l[i] = c
		if 'A' <= c && c <= 'Z' {
			l[i] = c + 'a' - 'A'
		}
		switch {
		case '0' <= c && c <= '9':
			w[i] = 2
		case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c >= 0x80:
			w[i] = 1
		}
	}
	return l, w
}()

// hash returns the FNV-1a hash of a prefix and a token, ASCII lowercased.
func hash[T string | []byte](prefix byte, tok T) uint64 {
	h := (uint64(fnvOffset) ^ uint64(prefix)) * fnvPrime
	for i := 0; i < len(tok); i++ {
		h = (h ^ uint64(lowerTable[tok[i]])) * fnvPrime
	}
	return h
}

func (t *tokenizer) str(prefix byte, tok string) { t.s.add(hash(prefix, tok)) }

// isWordByte: letters, digits and every byte of a UTF-8 sequence.
func isWordByte(c byte) bool { return wordTable[c] != 0 }

// words emits every word of text: runs of word bytes between minWordLen
// and maxWordLen long; long numbers (order numbers, dates) are left out.
func words[T string | []byte](t *tokenizer, prefix byte, text T) {
	start := (uint64(fnvOffset) ^ uint64(prefix)) * fnvPrime
	i := 0
	for i < len(text) {
		for i < len(text) && wordTable[text[i]] == 0 {
			i++
		}
		// One pass finds the word, counts its digits and hashes it (as
		// hash does).
		j, digits, h := i, 0, start
		for j < len(text) {
			c := text[j]
			k := wordTable[c]
			if k == 0 {
				break
			}
			digits += int(k >> 1)
			h = (h ^ uint64(lowerTable[c])) * fnvPrime
			j++
		}
		if n := j - i; n >= minWordLen && n <= maxWordLen && !(digits == n && n > 4) {
			t.s.add(h)
		}
		i = j
	}
}

// headers emits the tokens of the header fields that say something about
// the content and the sending software; trace fields (Received and the
// like) are left out, since they describe the path, not the message.
func (t *tokenizer) headers(msg *scoring.Message) {
	var subject, from, replyTo, mailer, ctype, cte string
	var haveSubject, haveMIME bool
	for _, h := range msg.Headers {
		switch {
		case h.Is("Subject"):
			subject, haveSubject = h.Value, true
		case h.Is("From"):
			if from == "" {
				from = h.Value
			}
		case h.Is("Reply-To"):
			replyTo = h.Value
		case h.Is("X-Mailer"), h.Is("User-Agent"):
			mailer = h.Value
		case h.Is("Content-Type"):
			ctype = h.Value
		case h.Is("Content-Transfer-Encoding"):
			cte = h.Value
		case h.Is("MIME-Version"):
			haveMIME = true
		}
	}
	if strings.Contains(subject, "=?") {
		subject = scoring.DecodeHeader(subject)
	}
	words(t, pSubject, subject)
	if !haveSubject {
		t.str(pShape, "no-subject")
	}
	if !haveMIME {
		t.str(pShape, "no-mime-version")
	}
	name, domain := splitAddress(from)
	if strings.Contains(name, "=?") {
		name = scoring.DecodeHeader(name)
	}
	words(t, pFromName, name)
	if name == "" {
		t.str(pFromName, "-")
	}
	t.domain(pFromDomain, domain)
	if replyTo != "" {
		_, rd := splitAddress(replyTo)
		if strings.EqualFold(rd, domain) {
			rd = "same"
		}
		t.str(pReplyTo, rd)
	}
	if mailer == "" {
		t.str(pMailer, "-")
	}
	words(t, pMailer, mailer)
	t.topText = t.contentType(ctype)
	cte = strings.TrimSpace(cte)
	if cte != "" {
		t.str(pEncoding, cte)
	}
	t.topQP, t.topB64 = strings.EqualFold(cte, "quoted-printable"), strings.EqualFold(cte, "base64")
}

// splitAddress returns the display name and the domain of the first
// address of an address header, cheaply and tolerantly: "Name <a@b>",
// "a@b (Name)" or "a@b".
func splitAddress(v string) (name, domain string) {
	addr := v
	if lt := strings.IndexByte(v, '<'); lt >= 0 {
		name = v[:lt]
		addr = v[lt+1:]
		if gt := strings.IndexByte(addr, '>'); gt >= 0 {
			addr = addr[:gt]
		}
	} else if lp := strings.IndexByte(v, '('); lp >= 0 {
		addr, name = v[:lp], strings.TrimRight(v[lp+1:], ") \t\n")
	}
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		domain = strings.TrimRight(strings.TrimSpace(addr[at+1:]), ">.,; \t\n")
	}
	return strings.Trim(name, "\" \t\n"), domain
}

// domain emits a domain and, when it differs, its registrable domain.
func (t *tokenizer) domain(prefix byte, d string) {
	if d == "" {
		t.str(prefix, "-")
		return
	}
	t.str(prefix, d)
	if r, err := publicsuffix.EffectiveTLDPlusOne(strings.ToLower(d)); err == nil && len(r) != len(d) {
		t.str(prefix, r)
	}
}

// contentType emits the media type and the charset of a Content-Type
// value, remembers a multipart boundary, and reports whether the entity
// holds text to read: a text or multipart type, or none (text/plain).
func (t *tokenizer) contentType(v string) bool {
	v = strings.TrimSpace(v)
	if v == "" {
		return true
	}
	media, params, _ := strings.Cut(v, ";")
	media = strings.TrimSpace(media)
	t.str(pContentType, media)
	multipart := len(media) >= 10 && strings.EqualFold(media[:10], "multipart/")
	if multipart {
		t.boundary(params)
	}
	if i := indexFold(params, "charset="); i >= 0 {
		cs := params[i+len("charset="):]
		if end := strings.IndexAny(cs, "; \t\n"); end >= 0 {
			cs = cs[:end]
		}
		t.str(pCharset, strings.Trim(cs, `"'`))
	}
	return multipart || len(media) >= 5 && strings.EqualFold(media[:5], "text/")
}

// indexFold is strings.Index for an ASCII lowercase needle, ignoring case
// in s.
func indexFold(s, needle string) int {
	for i := 0; i+len(needle) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(needle)], needle) {
			return i
		}
	}
	return -1
}

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

package classifier

import (
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

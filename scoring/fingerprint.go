package scoring

import (
	"bytes"
	"encoding/binary"
	"hash/fnv"
	"html"
	"strconv"
	"strings"
)

// Campaign fingerprints: what a message shares with the same campaign sent
// from other accounts, computed from the body sample alone.
//
//   - Body bands: the text of the text/plain and text/html parts (tags
//     stripped, transfer encodings undone), lowercased, with every word
//     that holds a digit, every URL and e-mail address and every short
//     greeting line ("Hi John,") left out, cut into shingles of three
//     words; a MinHash of the shingle set (fingerprintBands bands of
//     fingerprintRows hashes) gives one hash per band. Two bodies that
//     differ in per-recipient greetings, names or tracking tokens keep
//     most shingles, and so share at least one band with high
//     probability; unrelated bodies share none.
//   - Link domains: the registrable domain of every http(s) link, except
//     domains every newsletter links to (DefaultCampaignExemptDomains and
//     the configured ones) and URL shorteners, whose domain says nothing.
//   - Link URLs: every such link (shorteners included) as scheme, host and
//     path, without query or fragment, path segments that look like tokens
//     written "*".
//
// Each is a short string ("body:<hex>", "dom:<domain>", "url:<hex>"): the
// store counts, per fingerprint, the distinct accounts that sent it.

// The shape of the body MinHash: fingerprintBands band hashes of
// fingerprintRows minimum hashes each. With 6 bands of 4, two bodies whose
// shingle sets have a Jaccard similarity of 0.85 share a band with
// probability 1-(1-0.85^4)^6 ≈ 0.99, of 0.3 (shared boilerplate) with
// ≈ 0.05.
const (
	fingerprintBands = 6
	fingerprintRows  = 4
	shingleWords     = 3
)

// Bounds of the fingerprint work on one message.
const (
	minFingerprintWords = 8    // fewer words: no body fingerprint (too common)
	maxFingerprintWords = 1024 // words of the body looked at
	maxLinkFingerprints = 8    // distinct link domains, and distinct URLs
	greetingMaxWords    = 6    // a line this short starting with a greeting is left out
)

// The prefixes of the fingerprint kinds.
const (
	FingerprintBody   = "body:"
	FingerprintDomain = "dom:"
	FingerprintURL    = "url:"
)

// Fingerprints are a message's campaign fingerprints.
type Fingerprints struct {
	Bands   []string // "body:<hex>", fingerprintBands of them or none
	Domains []string // "dom:<registrable domain>"
	URLs    []string // "url:<hex of the normalised URL>"
	// URLText maps a "url:" fingerprint to its normalised URL, for reasons.
	URLText map[string]string
}

// DefaultCampaignExemptDomains are domains that all kinds of legitimate
// mail link to (social networks, big platforms, mailing services, XML
// namespaces): links to them or under them are no campaign sign.
func DefaultCampaignExemptDomains() []string {
	return []string{
		"google.com", "googleapis.com", "gstatic.com", "googleusercontent.com", "youtube.com", "youtu.be",
		"facebook.com", "fb.com", "fbcdn.net", "instagram.com", "twitter.com", "x.com", "twimg.com",
		"linkedin.com", "licdn.com", "pinterest.com", "tiktok.com", "whatsapp.com", "wa.me", "threads.net",
		"apple.com", "icloud.com", "microsoft.com", "office.com", "live.com", "outlook.com", "bing.com",
		"w3.org", "schema.org", "purl.org", "ogp.me", "xmlsoap.org", "gravatar.com", "wikipedia.org",
		"mailchimp.com", "list-manage.com", "mcusercontent.com", "mailchi.mp", "sendgrid.net", "sendgrid.com",
		"constantcontact.com", "mailgun.org", "mailgun.net", "sendinblue.com", "brevo.com", "hubspot.com",
		"hs-sites.com", "hubspotemail.net", "campaign-archive.com", "zoom.us", "github.com", "apache.org",
	}
}

// domainSet is a set of domains that also holds their subdomains.
type domainSet map[string]bool

// newDomainSet makes a set of lowercase domain names.
func newDomainSet(domains []string) domainSet {
	s := make(domainSet, len(domains))
	for _, d := range domains {
		s[strings.ToLower(strings.Trim(d, ". "))] = true
	}
	return s
}

// has reports whether host is in the set or under one of its domains.
func (s domainSet) has(host string) bool {
	for {
		if s[host] {
			return true
		}
		dot := strings.IndexByte(host, '.')
		if dot < 0 {
			return false
		}
		host = host[dot+1:]
	}
}

// messageFingerprints computes the fingerprints of a message; exempt holds
// the link domains (and their subdomains) to leave out. It only reads the
// message (the engine runs it beside the rules).
func messageFingerprints(msg *Message, exempt domainSet) Fingerprints {
	var fp Fingerprints
	var mh minHash
	mh.reset()
	links := linkSet{exempt: exempt}
	// The same text parts the rules read (readTextParts), plain text
	// whole: read again here, since this runs beside the rules and the
	// Check's cache is theirs.
	for _, p := range readTextParts(unfold(msg.Get("Content-Type")), unfold(msg.Get("Content-Transfer-Encoding")), msg.Body, maxPartText) {
		text := []byte(p.text)
		links.find(text)
		if p.isHTML {
			text = stripTags(text)
		}
		mh.addText(text)
	}
	if mh.words >= minFingerprintWords {
		fp.Bands = mh.bands()
	}
	fp.Domains, fp.URLs, fp.URLText = links.domains, links.urls, links.text
	return fp
}

// stripTags returns the text of an HTML part: tags out (line-breaking
// ones as line ends), style and script content out, entities decoded.
func stripTags(h []byte) []byte {
	out := make([]byte, 0, len(h)/2)
	for i := 0; i < len(h); {
		if h[i] != '<' {
			out = append(out, h[i])
			i++
			continue
		}
		end := bytes.IndexByte(h[i:], '>')
		if end < 0 {
			break
		}
		tag := h[i+1 : i+end]
		i += end + 1
		name := tagName(tag)
		switch name {
		case "style", "script", "head":
			closing := []byte("</" + name)
			if k := indexFold(h[i:], closing); k >= 0 {
				i += k
			} else {
				i = len(h)
			}
			out = append(out, '\n')
		case "br", "p", "/p", "div", "/div", "tr", "/tr", "li", "td", "table", "/table", "h1", "h2", "h3", "/h1", "/h2", "/h3":
			out = append(out, '\n')
		default:
			out = append(out, ' ')
		}
	}
	if bytes.IndexByte(out, '&') >= 0 {
		s := strings.ReplaceAll(string(out), "&nbsp;", " ")
		out = []byte(html.UnescapeString(s))
	}
	return out
}

// tagName returns a tag's name in lowercase ASCII, with a leading "/" for
// an end tag ("" for a long one: none that matters here is).
func tagName(tag []byte) string {
	n := 0
	if len(tag) > 0 && tag[0] == '/' {
		n = 1
	}
	for n < len(tag) && (tag[n] >= 'a' && tag[n] <= 'z' || tag[n] >= 'A' && tag[n] <= 'Z' || tag[n] >= '0' && tag[n] <= '9') {
		n++
	}
	if n > 8 {
		return ""
	}
	return strings.ToLower(string(tag[:n]))
}

// indexFold is bytes.Index ignoring ASCII case of s (sep is lowercase).
func indexFold(s, sep []byte) int {
	for i := 0; i+len(sep) <= len(s); i++ {
		if s[i] == '<' && bytes.EqualFold(s[i:i+len(sep)], sep) {
			return i
		}
	}
	return -1
}

// greetings start the short per-recipient lines that are left out (by
// their wordHash).
var greetings = func() map[uint64]bool {
	m := make(map[uint64]bool)
	for _, w := range []string{"hi", "hello", "hey", "dear", "greetings", "good", "hallo", "liebe", "lieber", "sehr",
		"bonjour", "salut", "hola", "estimado", "estimada", "ciao", "caro", "cara", "beste"} {
		m[wordHash([]byte(w))] = true
	}
	return m
}()

// minHash accumulates the MinHash of the three-word shingles of a text.
type minHash struct {
	mins   [fingerprintBands * fingerprintRows]uint64
	window [shingleWords]uint64 // the hashes of the last words
	words  int
	line   []uint64 // the word hashes of the current line
}

func (m *minHash) reset() {
	for i := range m.mins {
		m.mins[i] = ^uint64(0)
	}
}

// addText adds the words of a text, line by line.
func (m *minHash) addText(text []byte) {
	for line := range bytes.Lines(text) {
		if m.words >= maxFingerprintWords {
			return
		}
		m.line = m.line[:0]
		for rest := line; len(rest) > 0; {
			var tok []byte
			tok, rest = nextField(rest)
			if len(tok) == 0 || bytes.Contains(tok, []byte("://")) || bytes.IndexByte(tok, '@') >= 0 || hasPrefixFold(tok, "www.") {
				continue
			}
			for w := range wordsOf(tok) {
				m.line = append(m.line, wordHash(w))
			}
		}
		if len(m.line) > 0 && len(m.line) <= greetingMaxWords && greetings[m.line[0]] {
			continue
		}
		for _, h := range m.line {
			m.addWord(h)
		}
	}
}

// nextField splits the first whitespace-separated field off b (bytes.Fields
// without the slice).
func nextField(b []byte) (field, rest []byte) {
	i := 0
	for i < len(b) && isSpaceByte(b[i]) {
		i++
	}
	j := i
	for j < len(b) && !isSpaceByte(b[j]) {
		j++
	}
	return b[i:j], b[j:]
}

func isSpaceByte(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'
}

// wordsOf yields the words of a token that hold no digit: runs of ASCII
// letters, digits and non-ASCII bytes, at least two bytes long, that have
// no digit (wordHash ignores ASCII case).
func wordsOf(tok []byte) func(func([]byte) bool) {
	return func(yield func([]byte) bool) {
		start, digit := -1, false
		for i := 0; i <= len(tok); i++ {
			var c byte
			if i < len(tok) {
				c = tok[i]
			}
			switch {
			case i < len(tok) && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80):
			case i < len(tok) && c >= '0' && c <= '9':
				digit = true
			default:
				if start >= 0 && !digit && i-start >= 2 {
					if !yield(tok[start:i]) {
						return
					}
				}
				start, digit = -1, false
				continue
			}
			if start < 0 {
				start = i
			}
		}
	}
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && strings.EqualFold(string(b[:len(prefix)]), prefix)
}

// addWord adds one word: once three are seen, each new word completes a
// shingle whose hash lowers the minimums.
func (m *minHash) addWord(h uint64) {
	m.window[0], m.window[1], m.window[2] = m.window[1], m.window[2], h
	m.words++
	if m.words < shingleWords {
		return
	}
	sh := mix64(m.window[0] ^ rotl(m.window[1], 21) ^ rotl(m.window[2], 42))
	for i := range m.mins {
		// (sh ^ seed) * odd multiplier: a permutation of the 64-bit values
		// per slot, cheap enough for every shingle; sh is mixed already.
		if v := (sh ^ minHashSeeds[i]) * (minHashSeeds[i] | 1); v < m.mins[i] {
			m.mins[i] = v
		}
	}
}

// bands returns the band fingerprints: each band's row minimums hashed
// together with the band's number.
func (m *minHash) bands() []string {
	out := make([]string, fingerprintBands)
	var buf [8 * (fingerprintRows + 1)]byte
	for b := range fingerprintBands {
		binary.LittleEndian.PutUint64(buf[:], uint64(b))
		for r := range fingerprintRows {
			binary.LittleEndian.PutUint64(buf[8*(r+1):], m.mins[b*fingerprintRows+r])
		}
		out[b] = FingerprintBody + hex64(fnv64(buf[:]))
	}
	return out
}

// minHashSeeds are the fixed seeds of the MinHash functions: every milter
// must compute the same fingerprints.
var minHashSeeds = func() [fingerprintBands * fingerprintRows]uint64 {
	var s [fingerprintBands * fingerprintRows]uint64
	x := uint64(0x61627573656d696c) // "abusemil"
	for i := range s {
		x += 0x9e3779b97f4a7c15
		s[i] = mix64(x)
	}
	return s
}()

// mix64 is the splitmix64 finaliser.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

func rotl(x uint64, k uint) uint64 { return x<<k | x>>(64-k) }

// wordHash is FNV-1a of a word in lowercase ASCII.
func wordHash(w []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range w {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

func fnv64(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

func hex64(x uint64) string {
	s := strconv.FormatUint(x, 16)
	return strings.Repeat("0", 16-len(s)) + s
}

// linkSet collects the link fingerprints of a message, each once.
type linkSet struct {
	exempt  domainSet
	domains []string
	urls    []string
	text    map[string]string
	seen    map[string]bool
}

// find adds the http and https links of a text.
func (l *linkSet) find(text []byte) {
	s := text
	for {
		j := bytes.Index(s, []byte("://"))
		if j < 0 {
			return
		}
		scheme := ""
		switch {
		case j >= 5 && bytes.EqualFold(s[j-5:j], []byte("https")):
			scheme = "https"
		case j >= 4 && bytes.EqualFold(s[j-4:j], []byte("http")):
			scheme = "http"
		}
		s = s[j+3:]
		if scheme == "" {
			continue
		}
		end := 0
		for end < len(s) && end < 2048 && !isURLEnd(s[end]) {
			end++
		}
		l.add(scheme, s[:end])
		s = s[end:]
	}
}

// isURLEnd reports whether a byte ends a link in text or an attribute.
func isURLEnd(c byte) bool {
	return c <= ' ' || c == '"' || c == '\'' || c == '<' || c == '>' || c == ')' || c == ']' || c == '\\' || c >= 0x7f
}

// add adds one link (after "scheme://"): its registrable domain unless
// exempt or a shortener's, and its normalised URL unless exempt.
func (l *linkSet) add(scheme string, rest []byte) {
	hostEnd := len(rest)
	if k := bytes.IndexAny(rest, "/?#"); k >= 0 {
		hostEnd = k
	}
	host := string(rest[:hostEnd])
	if at := strings.LastIndexByte(host, '@'); at >= 0 {
		host = host[at+1:]
	}
	if k := strings.LastIndexByte(host, ':'); k >= 0 && !strings.Contains(host, "]") {
		host = host[:k]
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "" || !validHost(host) {
		return
	}
	if l.exempt.has(host) {
		return
	}
	reg := registrable(host)
	if reg != host && l.exempt.has(reg) {
		return
	}
	if l.seen == nil {
		l.seen = make(map[string]bool, 8)
	}
	shortener := urlShorteners[reg] || urlShorteners[host]
	if !shortener && len(l.domains) < maxLinkFingerprints {
		if k := FingerprintDomain + reg; !l.seen[k] {
			l.seen[k] = true
			l.domains = append(l.domains, k)
		}
	}
	if len(l.urls) >= maxLinkFingerprints {
		return
	}
	norm := normalizeURL(scheme, host, rest[hostEnd:], shortener)
	k := FingerprintURL + hex64(fnv64([]byte(norm)))
	if !l.seen[k] {
		l.seen[k] = true
		l.urls = append(l.urls, k)
		if l.text == nil {
			l.text = make(map[string]string, 4)
		}
		l.text[k] = norm
	}
}

// validHost reports whether a lowercase host name has only the bytes of
// an ASCII host name or an IP literal.
func validHost(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_' || c == '[' || c == ']' || c == ':') {
			return false
		}
	}
	return true
}

// normalizeURL writes a link as its campaign fingerprint sees it: scheme,
// lowercase host and path, without query or fragment, with every path
// segment that looks like a per-recipient token (one with a digit and at
// least six bytes, or any of more than 24) written "*", and without a
// final "/". path starts after the host ("/a/b?x=1#y", or empty). A
// shortener's path is its target's name: it is kept as written.
func normalizeURL(scheme, host string, path []byte, shortener bool) string {
	if k := bytes.IndexAny(path, "?#"); k >= 0 {
		path = path[:k]
	}
	var b strings.Builder
	b.Grow(len(scheme) + 3 + len(host) + len(path))
	b.WriteString(scheme)
	b.WriteString("://")
	b.WriteString(host)
	for seg := range bytes.SplitSeq(path, []byte("/")) {
		if len(seg) == 0 {
			continue
		}
		b.WriteByte('/')
		if shortener {
			b.Write(seg)
			continue
		}
		if len(seg) > 24 || len(seg) >= 6 && bytes.ContainsAny(seg, "0123456789") {
			b.WriteByte('*')
			continue
		}
		b.WriteString(strings.ToLower(string(seg)))
	}
	return b.String()
}

package scoring

import (
	"bytes"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/mtibben/confusables"
	"golang.org/x/text/unicode/norm"
)

// Brand names written with look-alike characters: "PаyPal" with a
// Cyrillic а, "Micr0soft", "Ｐａｙｐａｌ", "P a y P a l". Text is folded
// (invisible format characters dropped, NFKC: fullwidth forms, mathematical
// alphanumerics, ligatures and circled letters read as the plain letters),
// cut into words, and each word reduced to its skeleton (skeletonOf: the
// Unicode TR39 confusables skeleton, digit and symbol swaps, i read as l).
// A brand name matches a run of whole words whose skeletons, joined, are
// the name's skeleton; words are joined only when the letters are spaced
// out ("P a y P a l"), when the run has as many words as the name, or when
// one of them is written with look-alike characters. Names of fewer than
// five skeleton letters (DHL, UPS, HSBC) match one word only, and only a
// word with a character other than the Latin letters: "DHI" is not DHL,
// "DНL" with a Cyrillic Н is.

// smallCapitals are the Latin small capital letters that the TR39 table
// leaves as they are (ᴘᴀʏᴘᴀʟ).
var smallCapitals = strings.NewReplacer(
	"ᴀ", "a", "ʙ", "b", "ᴄ", "c", "ᴅ", "d", "ᴇ", "e", "ꜰ", "f", "ɢ", "g", "ʜ", "h", "ɪ", "i",
	"ᴊ", "j", "ᴋ", "k", "ʟ", "l", "ᴍ", "m", "ɴ", "n", "ᴏ", "o", "ᴘ", "p", "ʀ", "r", "ꜱ", "s",
	"ᴛ", "t", "ᴜ", "u", "ᴠ", "v", "ᴡ", "w", "ʏ", "y", "ᴢ", "z",
)

// acrossWords reads letter pairs that a word break may have split
// ("r n" joined is "rn", which reads as m) as skeletonOf reads them.
var acrossWords = strings.NewReplacer("rn", "m", "vv", "w")

// readPairs is acrossWords.Replace without its cost when there is nothing
// to replace (nearly always).
func readPairs(s string) string {
	if !strings.Contains(s, "rn") && !strings.Contains(s, "vv") {
		return s
	}
	return acrossWords.Replace(s)
}

// foldVisible returns s as it looks: invisible format characters (zero
// width space and joiners, soft hyphen, byte order mark, bidi controls:
// the Unicode Cf category) removed, compatibility forms folded (NFKC) and
// small capitals read as letters.
func foldVisible(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.Is(unicode.Cf, r) {
			return -1
		}
		return r
	}, s)
	return smallCapitals.Replace(norm.NFKC.String(s))
}

// isNameRune reports whether r belongs to a word of a name: letters,
// digits, combining marks, enclosed letters (ⓟ), the symbols that stand in
// for letters (P@yPal, Micro$oft, |inkedIn), and invisible format
// characters, which hide inside a word without splitting it.
func isNameRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsNumber(r) || unicode.Is(unicode.Mn, r) || unicode.Is(unicode.Cf, r) ||
		r >= 0x249C && r <= 0x24E9 || r == '@' || r == '$' || r == '|'
}

// nameWord is one word of a text: its byte span, its skeleton (a span of
// nameText.skel), and whether it is written in plain Latin letters only.
type nameWord struct {
	start, end int
	sk0, sk1   int
	runes      int
	latin      bool
}

// nameText is a text cut into words, their skeletons side by side in one
// buffer (no allocation per word).
type nameText struct {
	words []nameWord
	skel  []byte
}

// skeleton returns a word's skeleton.
func (t *nameText) skeleton(w nameWord) []byte { return t.skel[w.sk0:w.sk1] }

// maxNameWords bounds the words of one text compared with brand names.
const maxNameWords = 400

// nameWords cuts text into words (runs of isNameRune), at most
// maxNameWords.
func nameWords(s string) nameText {
	t := nameText{words: make([]nameWord, 0, min(maxNameWords, len(s)/6+1)), skel: make([]byte, 0, len(s))}
	start := -1
	flush := func(end int) {
		if start < 0 {
			return
		}
		w := s[start:end]
		latin := true
		for i := 0; i < len(w); i++ {
			if c := w[i] | 0x20; c < 'a' || c > 'z' {
				latin = false
				break
			}
		}
		nw := nameWord{start: start, end: end, sk0: len(t.skel), runes: len(w), latin: latin}
		if latin {
			t.skel = appendLatinSkeleton(t.skel, w)
		} else {
			// The skeleton of the word as written first: lowercasing would
			// turn a Cyrillic Н (H) into н, which looks like no Latin letter.
			f := confusables.Skeleton(foldVisible(w))
			t.skel = append(t.skel, skeletonOf(f)...)
			nw.runes = utf8.RuneCountInString(f)
		}
		nw.sk1 = len(t.skel)
		t.words = append(t.words, nw)
		start = -1
	}
	for i, r := range s {
		if isNameRune(r) {
			if start < 0 {
				start = i
			}
			continue
		}
		flush(i)
		if len(t.words) >= maxNameWords {
			return t
		}
	}
	flush(len(s))
	return t
}

// appendLatinSkeleton appends the skeleton of a word of plain Latin
// letters, the same as the full mapping gives (TestLatinSkeleton) without
// its cost: lowercase, i read as l, rn as m, vv as w.
func appendLatinSkeleton(dst []byte, w string) []byte {
	for i := 0; i < len(w); i++ {
		c := w[i] | 0x20
		switch {
		case c == 'i':
			c = 'l'
		case c == 'n' && len(dst) > 0 && dst[len(dst)-1] == 'r' && i > 0:
			dst[len(dst)-1] = 'm'
			continue
		case c == 'v' && len(dst) > 0 && dst[len(dst)-1] == 'v' && i > 0:
			dst[len(dst)-1] = 'w'
			continue
		}
		dst = append(dst, c)
	}
	return dst
}

// plainWords returns the words of a run as written, lowercase, separated
// by one space.
func plainWords(s string, run []nameWord) string {
	var b strings.Builder
	for k, w := range run {
		if k > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strings.ToLower(s[w.start:w.end]))
	}
	return b.String()
}

// brandSpelling is one name of a protected brand, prepared for comparison.
type brandSpelling struct {
	brand    int    // index in lexicon.brands
	written  string // as the brand writes it, e.g. "PayPal"
	plain    string // lowercase, words separated by one space
	joined   string // plain without spaces ("bankofamerica")
	words    int
	skeleton string // the skeletons of its words, joined
}

// minJoinedSkeleton is the shortest name skeleton matched across words or
// on a word of plain Latin letters.
const minJoinedSkeleton = 5

// prepareSpellings indexes the brands' names by skeleton, and returns
// every prefix of their skeletons (a run of words that is no prefix
// cannot become a name) and the longest skeleton's length.
func prepareSpellings(brands []Brand) (map[string][]brandSpelling, map[string]bool, int) {
	idx := make(map[string][]brandSpelling)
	prefixes := make(map[string]bool)
	longest := 0
	for i, b := range brands {
		for _, n := range b.Names {
			t := nameWords(n)
			if len(t.words) == 0 {
				continue
			}
			var skel []byte
			for _, w := range t.words {
				skel = append(skel, t.skeleton(w)...)
			}
			sp := brandSpelling{brand: i, written: n, plain: plainWords(n, t.words), words: len(t.words),
				skeleton: readPairs(string(skel))}
			sp.joined = strings.ReplaceAll(sp.plain, " ", "")
			if utf8.RuneCountInString(sp.skeleton) < 3 {
				continue // too short to tell from chance
			}
			idx[sp.skeleton] = append(idx[sp.skeleton], sp)
			longest = max(longest, len(sp.skeleton))
			for k := 1; k <= len(sp.skeleton); k++ {
				p := sp.skeleton[:k]
				prefixes[p] = true
				// A word may end in the first letter of a pair that the
				// next one completes ("r n" is m, "v v" is w).
				switch p[k-1] {
				case 'm':
					prefixes[p[:k-1]+"r"] = true
				case 'w':
					prefixes[p[:k-1]+"v"] = true
				}
			}
		}
	}
	return idx, prefixes, longest
}

// confusableName is a brand name found written with look-alike characters.
type confusableName struct {
	brand   Brand
	written string // the brand's own spelling
	seen    string // the matched words as written, bounded
}

// confusableBrand returns the first protected brand whose name s writes
// with look-alike characters, invisible characters or spaced-out letters,
// skipping brands for which skip reports true (the sender's own). A name
// written plainly ("PayPal", "PAYPAL", "Bank of America") is no hit: the
// plain claims are BRAND_DISPLAY_NAME's.
func (lx *lexicon) confusableBrand(s string, skip func(Brand) bool) (confusableName, bool) {
	if len(lx.spellings) == 0 || s == "" {
		return confusableName{}, false
	}
	t := nameWords(s)
	words := t.words
	joined := make([]byte, 0, lx.longestName+16)
	for i := range words {
		joined = joined[:0]
		for j := i; j < len(words); j++ {
			joined = append(joined, t.skeleton(words[j])...)
			key := joined
			if bytes.Contains(key, []byte("rn")) || bytes.Contains(key, []byte("vv")) {
				key = []byte(readPairs(string(key)))
			}
			if len(key) > lx.longestName || !lx.namePrefixes[string(key)] {
				break
			}
			for _, sp := range lx.spellings[string(key)] {
				run := words[i : j+1]
				if !spellingMatches(s, run, sp) || (skip != nil && skip(lx.brands[sp.brand])) {
					continue
				}
				return confusableName{brand: lx.brands[sp.brand], written: sp.written, seen: cutText(s[run[0].start:run[len(run)-1].end], 60)}, true
			}
		}
	}
	return confusableName{}, false
}

// spellingMatches decides whether a run of words whose skeleton is the
// name's is a disguised spelling of it (see the comment at the top).
func spellingMatches(s string, run []nameWord, sp brandSpelling) bool {
	latin := true
	short := true
	for _, w := range run {
		latin = latin && w.latin
		short = short && w.runes <= 2
	}
	nameLen := utf8.RuneCountInString(sp.skeleton)
	if nameLen < minJoinedSkeleton && (len(run) > 1 || latin) {
		return false
	}
	if len(run) > 1 && !short && len(run) != sp.words && latin {
		return false
	}
	// The plain spelling, in any case and with any separators between
	// its words, is no disguise.
	as := plainWords(s, run)
	return as != sp.plain && as != sp.joined
}

// Bounds of the lead text: the first lines of the body that
// BRAND_CONFUSABLE_NAME reads.
const (
	leadLines    = 8
	leadLineLen  = 200
	leadTextSize = 1 << 10
)

// leadText returns the first non-empty lines of the message's first body
// text part (HTML read as its visible text), quoted lines left out.
func (c *Check) leadText() string {
	parts := c.textParts()
	for i := range parts {
		part := &parts[i]
		if part.name != "" {
			continue
		}
		text := part.text
		if part.isHTML {
			text = part.html().text
		}
		var b strings.Builder
		n := 0
		for line := range strings.Lines(text) {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, ">") {
				continue
			}
			b.WriteString(cutText(line, leadLineLen))
			b.WriteByte('\n')
			if n++; n >= leadLines || b.Len() >= leadTextSize {
				break
			}
		}
		return b.String()
	}
	return ""
}

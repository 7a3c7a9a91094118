package scoring

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"strings"

	"github.com/abusemilter/abusemilter/attachment"
	"golang.org/x/net/html"
)

// textPart is one decoded text part of the body sample: a text/plain or
// text/html body part, or an attached HTML file.
type textPart struct {
	isHTML bool
	// name is the file name of an attachment ("" for a body part).
	name string
	text string
	// cut says a plain text part was read only in part (plainLeadBytes).
	cut bool
	// facts is the analysis of an HTML part, made on first use (html).
	facts *htmlFacts
}

// html returns the analysis of an HTML part, once per part.
func (p *textPart) html() *htmlFacts {
	if p.facts == nil {
		f := analyseHTML(p.text)
		p.facts = &f
	}
	return p.facts
}

// Bounds of the text read from one body sample.
const (
	maxTextParts = 20
	maxPartText  = 128 << 10
	maxTextTotal = 512 << 10
	maxMIMEDepth = 5
	// plainLeadBytes is what textParts reads of a plain text part: the
	// first lines are all most rules need (allTextParts reads the rest).
	plainLeadBytes = 4 << 10
)

// textParts returns the text parts of the body sample, decoded (transfer
// encoding and charset), once per message: HTML parts whole, plain text
// parts their first plainLeadBytes. A part cut off by the sample is kept
// as far as it goes.
func (c *Check) textParts() []textPart {
	if !c.partsRead {
		c.partsRead = true
		c.parts = c.readTextParts(plainLeadBytes)
	}
	return c.parts
}

// allTextParts is textParts with plain text parts read whole (not kept:
// few messages need it).
func (c *Check) allTextParts() []textPart {
	parts := c.textParts()
	for _, p := range parts {
		if p.cut {
			return c.readTextParts(maxPartText)
		}
	}
	return parts
}

func (c *Check) readTextParts(plainMax int) []textPart {
	return readTextParts(unfold(c.Msg.Get("Content-Type")), unfold(c.Msg.Get("Content-Transfer-Encoding")), c.Msg.Body, plainMax)
}

// readTextParts walks a body (tolerantly: a malformed or truncated
// structure ends the walk, keeping what was read) and returns its text
// parts within the bounds above, plain text parts up to plainMax bytes.
func readTextParts(ctype, cte string, body []byte, plainMax int) []textPart {
	var out []textPart
	total := 0
	var walk func(ctype, cte, disp string, r io.Reader, depth int)
	walk = func(ctype, cte, disp string, r io.Reader, depth int) {
		mt, params := "text/plain", map[string]string{}
		if strings.TrimSpace(ctype) != "" {
			var err error
			if mt, params, err = mime.ParseMediaType(ctype); err != nil && mt == "" {
				// (a bad parameter still gives the type; a bad type gives
				// nothing, so read it as written)
				mt, _, _ = strings.Cut(strings.ToLower(strings.TrimSpace(ctype)), ";")
			}
		}
		if strings.HasPrefix(mt, "multipart/") {
			if depth >= maxMIMEDepth || params["boundary"] == "" {
				return
			}
			mr := multipart.NewReader(r, params["boundary"])
			for len(out) < maxTextParts && total < maxTextTotal {
				p, err := mr.NextRawPart()
				if err != nil {
					return
				}
				walk(p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p.Header.Get("Content-Disposition"), p, depth+1)
			}
			return
		}
		name := partFileName(disp, params)
		lname := strings.ToLower(name)
		isHTML := mt == "text/html" || mt == "application/xhtml+xml" ||
			strings.HasSuffix(lname, ".html") || strings.HasSuffix(lname, ".htm") || strings.HasSuffix(lname, ".shtml")
		d := strings.ToLower(strings.TrimSpace(disp))
		attached := strings.HasPrefix(d, "attachment") || name != "" && !strings.HasPrefix(d, "inline")
		if !isHTML && (mt != "text/plain" || attached) {
			return
		}
		rd := attachment.DecodeTransfer(cte, r)
		if cs := strings.ToLower(params["charset"]); cs != "" && cs != "utf-8" && cs != "us-ascii" {
			if d, err := charsetReader(cs, rd); err == nil {
				rd = d
			}
		}
		limit := min(maxPartText, maxTextTotal-total)
		if !isHTML {
			limit = min(limit, plainMax)
		}
		b, _ := io.ReadAll(io.LimitReader(rd, int64(limit+1)))
		cut := len(b) > limit
		b = b[:min(len(b), limit)]
		total += len(b)
		if !attached {
			name = ""
		} else if name == "" {
			name = "(unnamed)"
		}
		out = append(out, textPart{isHTML: isHTML, name: name, text: string(b), cut: cut && !isHTML})
	}
	walk(ctype, cte, "", bytes.NewReader(body), 0)
	return out
}

// partFileName returns a part's file name from its Content-Disposition
// filename or Content-Type name parameter (RFC 2231 and RFC 2047 encoded
// names decoded), or "".
func partFileName(disp string, typeParams map[string]string) string {
	if _, p, err := mime.ParseMediaType(disp); err == nil && p["filename"] != "" {
		return DecodeHeader(p["filename"])
	}
	return DecodeHeader(typeParams["name"])
}

// htmlAnchor is a link of an HTML part: its target and visible text.
type htmlAnchor struct {
	href, text string
}

// htmlFacts is what the phishing rules read from one HTML part.
type htmlFacts struct {
	anchors []htmlAnchor
	// password says where an <input type=password> was seen ("" when
	// none): "a form posting to evil.example", "a form", "the page".
	password string
	// dangerous is the first javascript:, vbscript: or data: link, as
	// `<a href="javascript:...">` (bounded), "" when none.
	dangerous string
	// text is the visible text, block elements ending lines.
	text string
}

// Bounds of one HTML part's analysis.
const (
	maxAnchors    = 200
	maxAnchorText = 200
	maxHTMLText   = 64 << 10
)

// analyseHTML reads an HTML document with the tolerant tokenizer of
// golang.org/x/net/html: the anchors with their text, password fields,
// dangerous link schemes, and the visible text.
func analyseHTML(src string) htmlFacts {
	var f htmlFacts
	z := html.NewTokenizer(strings.NewReader(src))
	var text strings.Builder
	skip := 0        // depth inside script, style, title, head elements
	anchor := -1     // index of the open anchor in f.anchors
	formAction := "" // the open form's action; "-" for a form without one
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			f.text = text.String()
			return f
		case html.TextToken:
			if skip > 0 {
				continue
			}
			t := z.Text()
			if text.Len() < maxHTMLText {
				text.Write(t)
			}
			if anchor >= 0 && len(f.anchors[anchor].text) < maxAnchorText {
				f.anchors[anchor].text += string(t)
			}
		case html.StartTagToken, html.SelfClosingTagToken, html.EndTagToken:
			nameB, hasAttr := z.TagName()
			tag := string(nameB)
			if tt == html.EndTagToken {
				switch tag {
				case "script", "style", "title", "head":
					skip = max(0, skip-1)
				case "a":
					anchor = -1
				case "form":
					formAction = ""
				}
				if blockTags[tag] {
					text.WriteByte('\n')
				}
				continue
			}
			if blockTags[tag] {
				text.WriteByte('\n')
			}
			var href, action, typ string
			var hasHref bool
			for hasAttr {
				var k, v []byte
				k, v, hasAttr = z.TagAttr()
				switch string(k) {
				case "href":
					href, hasHref = string(v), true
				case "action":
					action = string(v)
				case "type":
					typ = string(v)
				}
				if f.dangerous == "" && mayBeScript(v) {
					f.dangerous = dangerousAttr(tag, string(k), string(v))
				}
			}
			switch tag {
			case "script", "style", "title", "head":
				if tt == html.StartTagToken {
					skip++
				}
			case "a":
				if hasHref && len(f.anchors) < maxAnchors && tt == html.StartTagToken {
					f.anchors = append(f.anchors, htmlAnchor{href: strings.TrimSpace(href)})
					anchor = len(f.anchors) - 1
				}
			case "form":
				formAction = "-"
				if a := strings.TrimSpace(action); a != "" {
					formAction = a
				}
			case "input":
				if strings.EqualFold(strings.TrimSpace(typ), "password") && f.password == "" {
					switch {
					case formAction == "":
						f.password = "the page"
					case formAction == "-":
						f.password = "a form"
					default:
						f.password = "a form posting to " + truncate(linkHost(formAction, formAction), 60)
					}
				}
			}
		}
	}
}

// blockTags are the elements that start a new line of visible text.
var blockTags = map[string]bool{
	"p": true, "br": true, "div": true, "tr": true, "li": true, "h1": true, "h2": true, "h3": true,
	"h4": true, "h5": true, "h6": true, "table": true, "blockquote": true, "hr": true,
}

// linkAttrs are the attributes that hold a link a click or a load follows.
var linkAttrs = map[string]bool{"href": true, "src": true, "action": true, "formaction": true, "data": true}

// mayBeScript is a cheap first test for dangerousAttr: whether an
// attribute value's first visible character can start one of its schemes.
func mayBeScript(v []byte) bool {
	for _, c := range v {
		if c <= ' ' {
			continue
		}
		c |= 0x20
		return c == 'j' || c == 'v' || c == 'd'
	}
	return false
}

// dangerousAttr returns a link attribute with a javascript:, vbscript:
// or data: scheme, as written (bounded), or "". Inline images
// (data:image/... on img) are common in HTML mail and do not count, nor
// does the do-nothing "javascript:void(0)".
func dangerousAttr(tag, attr, v string) string {
	if !linkAttrs[attr] {
		return ""
	}
	// Browsers ignore whitespace and control characters inside a scheme
	// ("java\tscript:").
	s := strings.ToLower(strings.Map(func(r rune) rune {
		if r <= ' ' {
			return -1
		}
		return r
	}, v))
	switch {
	case strings.HasPrefix(s, "javascript:"):
		if rest := strings.TrimSuffix(strings.TrimPrefix(s, "javascript:"), ";"); rest == "" || rest == "void(0)" || rest == "void0" {
			return ""
		}
	case strings.HasPrefix(s, "vbscript:"):
	case strings.HasPrefix(s, "data:"):
		if tag == "img" && strings.HasPrefix(s, "data:image/") {
			return ""
		}
	default:
		return ""
	}
	return truncate("<"+tag+" "+attr+"=\""+strings.Join(strings.Fields(v), " ")+"\">", 80)
}

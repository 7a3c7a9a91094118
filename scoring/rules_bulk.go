package scoring

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/netip"
	"strings"
)

// Rule IDs of the spam-volume clause's content signs.
const (
	RuleBCCBlast          = "BCC_BLAST"
	RuleRcptManyDomains   = "RCPT_MANY_DOMAINS"
	RuleURLShortener      = "URL_SHORTENER"
	RuleURLRawIP          = "URL_RAW_IP"
	RuleBulkNoUnsubscribe = "BULK_NO_UNSUBSCRIBE"
)

// Thresholds of the bulk rules.
const (
	bccMinRecipients     = 10 // envelope recipients before BCC_BLAST looks
	manyDomainsThreshold = 10 // distinct recipient domains for RCPT_MANY_DOMAINS
	bulkRecipients       = 20 // envelope recipients that make a message look bulk
)

func bulkRules() []Rule {
	return []Rule{
		{
			ID: RuleBCCBlast, Clause: SpamVolume, Score: 4,
			Summary:        fmt.Sprintf("At least %d envelope recipients and more than twice (plus five) the addresses in To and Cc: a blind-copy blast.", bccMinRecipients),
			FalsePositives: "Small-business newsletters sent in Bcc; forwarder accounts (list servers) are exempt.",
			Check: func(c *Check) (string, bool) {
				n := len(c.Env.Rcpts)
				if n < bccMinRecipients || c.forwarder() {
					return "", false
				}
				to, _ := c.Addresses("To")
				cc, _ := c.Addresses("Cc")
				visible := len(to) + len(cc)
				if n > 2*visible+5 {
					return fmt.Sprintf("%d envelope recipients, %d in To/Cc", n, visible), true
				}
				return "", false
			},
		},
		{
			ID: RuleRcptManyDomains, Clause: SpamVolume, Score: 3,
			Summary:        fmt.Sprintf("The envelope recipients span at least %d unrelated registrable domains.", manyDomainsThreshold),
			FalsePositives: "Announcements to many partner organisations; forwarder accounts are exempt.",
			Check: func(c *Check) (string, bool) {
				if len(c.Env.Rcpts) < manyDomainsThreshold || c.forwarder() {
					return "", false
				}
				seen := make(map[string]bool, len(c.Env.Rcpts))
				for _, r := range c.Env.Rcpts {
					if d := domainOf(r); d != "" {
						seen[registrable(d)] = true
					}
				}
				if len(seen) >= manyDomainsThreshold {
					return fmt.Sprintf("%d recipients in %d domains", len(c.Env.Rcpts), len(seen)), true
				}
				return "", false
			},
		},
		{
			ID: RuleURLShortener, Clause: SpamVolume, Score: 2,
			Summary:        "The body sample links through a URL shortener (bit.ly, tinyurl.com, ...), hiding the target.",
			FalsePositives: "Social-media style messages; scored low. Base64-encoded bodies are not searched.",
			Check: func(c *Check) (string, bool) {
				for _, host := range c.urlHosts() {
					if urlShorteners[registrable(host)] || urlShorteners[host] {
						return fmt.Sprintf("link through %q", host), true
					}
				}
				return "", false
			},
		},
		{
			ID: RuleURLRawIP, Clause: SpamVolume, Score: 4,
			Summary:        "The body sample links to a raw public IP address instead of a host name.",
			FalsePositives: "Technical mail about servers; private and loopback addresses do not count.",
			Check: func(c *Check) (string, bool) {
				for _, host := range c.urlHosts() {
					ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
					if err == nil && ip.IsGlobalUnicast() && !ip.IsPrivate() {
						return fmt.Sprintf("link to %s", ip), true
					}
				}
				return "", false
			},
		},
		{
			ID: RuleBulkNoUnsubscribe, Clause: SpamVolume, Score: 3,
			Summary:        fmt.Sprintf("Bulk-looking mail (Precedence: bulk or list, or at least %d envelope recipients) without a List-Unsubscribe header (RFC 2369, RFC 8058).", bulkRecipients),
			FalsePositives: "Old mailing-list software that marks Precedence but not List-Unsubscribe.",
			Check: func(c *Check) (string, bool) {
				if c.Count("List-Unsubscribe") > 0 {
					return "", false
				}
				prec := strings.ToLower(strings.TrimSpace(unfold(c.Msg.Get("Precedence"))))
				if prec == "bulk" || prec == "list" {
					return fmt.Sprintf("Precedence: %s without List-Unsubscribe", prec), true
				}
				if len(c.Env.Rcpts) >= bulkRecipients {
					return fmt.Sprintf("%d recipients without List-Unsubscribe", len(c.Env.Rcpts)), true
				}
				return "", false
			},
		},
	}
}

// maxURLHosts bounds the links examined per message.
const maxURLHosts = 200

// urlHosts returns the hosts linked from the body sample, once per
// message, including links inside base64-encoded text parts.
func (c *Check) urlHosts() []string {
	if !c.urlsParsed {
		c.urlsParsed = true
		c.urls = bodyURLHosts(c.Msg.Body)
		if len(c.urls) < maxURLHosts {
			topLevel := strings.EqualFold(strings.TrimSpace(c.Msg.Get("Content-Transfer-Encoding")), "base64") &&
				isTextType(c.Msg.Get("Content-Type"))
			if decoded := decodeBase64Text(c.Msg.Body, topLevel); len(decoded) > 0 {
				more := bodyURLHosts(decoded)
				c.urls = append(c.urls, more[:min(len(more), maxURLHosts-len(c.urls))]...)
			}
		}
	}
	return c.urls
}

// maxDecodedText bounds what decodeBase64Text returns.
const maxDecodedText = 512 << 10

// decodeBase64Text returns the decoded text of the base64-encoded text
// parts in a body sample: the whole body when topLevel says the message
// itself is base64 text, and every MIME part whose own header block says
// "Content-Transfer-Encoding: base64" with a text (or no) Content-Type. A
// part cut off by the sample is decoded as far as it goes. It is a
// tolerant line scanner, not a MIME parser: it needs no boundary and never
// fails.
func decodeBase64Text(body []byte, topLevel bool) []byte {
	var out, chunk []byte
	flush := func() {
		if len(chunk) >= 4 {
			n := len(chunk) / 4 * 4
			dec := make([]byte, base64.StdEncoding.DecodedLen(n))
			if m, err := base64.StdEncoding.Decode(dec, chunk[:n]); err == nil || m > 0 {
				out = append(out, dec[:m]...)
				out = append(out, '\n')
			}
		}
		chunk = chunk[:0]
	}
	const (
		scanning = iota // looking for a part header block
		inHeader        // in a part's header block
		inBase64        // in a base64 text part's body
	)
	state, isB64, isText := scanning, false, true
	if topLevel {
		state = inBase64
	}
	for line := range bytes.Lines(body) {
		if len(out) >= maxDecodedText {
			break
		}
		t := bytes.TrimRight(line, "\r\n")
		switch state {
		case scanning:
			if bytes.HasPrefix(t, []byte("--")) { // a boundary: a part header block follows
				state, isB64, isText = inHeader, false, true
			}
		case inHeader:
			if len(bytes.TrimSpace(t)) == 0 {
				state = scanning
				if isB64 && isText {
					state = inBase64
				}
				continue
			}
			name, value, ok := bytes.Cut(t, []byte(":"))
			if !ok {
				continue
			}
			switch strings.ToLower(string(bytes.TrimSpace(name))) {
			case "content-transfer-encoding":
				isB64 = strings.EqualFold(string(bytes.TrimSpace(value)), "base64")
			case "content-type":
				isText = isTextType(string(value))
			}
		case inBase64:
			if !isBase64Line(t) {
				flush()
				state = scanning
				if bytes.HasPrefix(t, []byte("--")) {
					state, isB64, isText = inHeader, false, true
				}
				continue
			}
			chunk = append(chunk, bytes.TrimSpace(t)...)
		}
	}
	flush()
	return out[:min(len(out), maxDecodedText)]
}

// isTextType reports whether a Content-Type value is text (or absent,
// which means text/plain).
func isTextType(v string) bool {
	v = strings.ToLower(strings.TrimSpace(v))
	return v == "" || strings.HasPrefix(v, "text/")
}

// isBase64Line reports whether a line holds only base64 characters.
func isBase64Line(t []byte) bool {
	t = bytes.TrimSpace(t)
	if len(t) == 0 {
		return false
	}
	for _, b := range t {
		if !(b >= 'A' && b <= 'Z' || b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '+' || b == '/' || b == '=') {
			return false
		}
	}
	return true
}

// bodyURLHosts returns the lowercase hosts of http and https links in a
// body sample (links are cut at quoted-printable soft breaks and "=3D",
// so encoded bodies still yield their hosts).
func bodyURLHosts(body []byte) []string {
	var hosts []string
	s := body
	for len(hosts) < maxURLHosts {
		j := bytes.Index(s, []byte("://"))
		if j < 0 {
			break
		}
		scheme := j >= 4 && bytes.EqualFold(s[j-4:j], []byte("http")) ||
			j >= 5 && bytes.EqualFold(s[j-5:j], []byte("https"))
		rest := s[j+3:]
		s = rest
		if !scheme {
			continue
		}
		end := 0
		if len(rest) > 0 && rest[0] == '[' { // IPv6 literal
			if k := bytes.IndexByte(rest[:min(len(rest), 64)], ']'); k > 0 {
				end = k + 1
			}
		} else {
			for end < len(rest) && !strings.ContainsRune("/?#:\"'<> \t\r\n=)]\\", rune(rest[end])) {
				end++
			}
		}
		if end > 0 && end < 256 {
			host := strings.ToLower(string(rest[:end]))
			if at := strings.LastIndexByte(host, '@'); at >= 0 {
				host = host[at+1:]
			}
			hosts = append(hosts, strings.TrimSuffix(host, "."))
		}
		s = rest[end:]
	}
	return hosts
}

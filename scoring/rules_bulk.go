package scoring

import (
	"bytes"
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

// urlHosts returns the hosts linked from the body sample, once per message.
func (c *Check) urlHosts() []string {
	if !c.urlsParsed {
		c.urlsParsed = true
		c.urls = bodyURLHosts(c.Msg.Body)
	}
	return c.urls
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

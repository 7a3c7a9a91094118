package milter

import (
	"net"
	"net/netip"
	"strings"

	"github.com/abusemilter/abusemilter/scoring"
)

// Macro names this package asks the MTA for.
const (
	macroQueueID    = "i"
	macroAuthType   = "{auth_type}"
	macroAuthAuthen = "{auth_authen}"
	macroClientAddr = "{client_addr}"
	macroClientName = "{client_name}"
	macroMailAddr   = "{mail_addr}"
	macroRcptAddr   = "{rcpt_addr}"
)

// Names of the headers this milter owns. Copies sent by the client are
// removed from every message.
const (
	HeaderVerdict  = "X-Abuse-Verdict"
	HeaderFindings = "X-Abuse-Findings"
)

// connState is what is known about the SMTP connection; it survives across
// messages on the same milter connection.
type connState struct {
	clientAddr netip.Addr
	clientName string
	helo       string
	authLogin  string
	authType   string
}

// messageState is one message (one SMTP transaction) from MAIL FROM to end
// of message or abort.
type messageState struct {
	started  bool // MAIL FROM seen
	queueID  string
	mailFrom string
	rcpts    []string
	// rcptRefused counts recipients refused past the per-message cap.
	rcptRefused int

	headers        []scoring.Header
	headerBytes    int
	headersDropped int
	// ownHeaders counts client-sent X-Abuse-* headers by canonical name, so
	// that every one of them can be removed (indexes are per name).
	ownHeaders map[string]int

	body          []byte
	bodySize      int64
	bodyTruncated bool
}

// limits bounds what a message state keeps.
type limits struct {
	bodySample  int
	maxHeaders  int
	headerBytes int
	// own are the canonical names of the headers the milter writes itself
	// (X-Abuse-*, the desk's tracking header): copies the client sent are
	// counted, to be removed.
	own []string
}

// applyMacros copies the macros of the current packet into the connection
// and message state. An empty or missing macro never erases a known value:
// Postfix sends only the macros of the current stage.
func (c *connState) applyMacros(m map[string]string, msg *messageState) {
	if v := m[macroClientAddr]; v != "" {
		if a, err := netip.ParseAddr(strings.Trim(v, "[]")); err == nil {
			c.clientAddr = a.Unmap()
		}
	}
	if v := m[macroClientName]; v != "" {
		c.clientName = v
	}
	if v := m[macroAuthAuthen]; v != "" {
		c.authLogin = v
	}
	if v := m[macroAuthType]; v != "" {
		c.authType = v
	}
	if msg != nil {
		if v := m[macroQueueID]; v != "" {
			msg.queueID = v
		}
	}
}

// setClient records the client from the Connect callback.
func (c *connState) setClient(host string, addr net.IP) {
	if host != "" {
		c.clientName = host
	}
	if a, ok := netip.AddrFromSlice(addr); ok {
		c.clientAddr = a.Unmap()
	}
}

// envelope builds the scoring view of the connection and message.
func (c *connState) envelope(msg *messageState) *scoring.Envelope {
	return &scoring.Envelope{
		ClientAddr: c.clientAddr,
		ClientName: c.clientName,
		Helo:       c.helo,
		AuthLogin:  c.authLogin,
		AuthType:   c.authType,
		QueueID:    msg.queueID,
		MailFrom:   msg.mailFrom,
		Rcpts:      append([]string(nil), msg.rcpts...),
	}
}

// headerValues is the one place where a header value from the MTA becomes
// the two values the milter works with. rules (which addHeader passes
// through scoring.NewHeader, the header reader's form) is what the rule engine,
// X-Abuse-* handling, the header caps and the scoring.Message see: the value
// with the one space after the colon removed, as MTAs send it by default
// (a tab, or a second space, stays). field is the text after the colon as in
// the message, for the body sink (DKIM). With SMFIP_HDR_LEADSPC negotiated
// (leadingSpace) the MTA sends field; without it the MTA sends rules, and
// field is a guess with one space put back.
func headerValues(value string, leadingSpace bool) (rules, field string) {
	if leadingSpace {
		return strings.TrimPrefix(value, " "), value
	}
	return value, " " + value
}

// addedHeaderValue is the value to send for a header this milter adds or
// changes. With SMFIP_HDR_LEADSPC negotiated the MTA writes the value right
// after the colon (Postfix milter8.c MILTER8_HDR_SPACE, Sendmail likewise),
// so the usual space is sent with it.
func addedHeaderValue(v string, leadingSpace bool) string {
	if leadingSpace {
		return " " + v
	}
	return v
}

// addHeader keeps a header (its rules value, see headerValues) within the
// count and byte caps.
// Client-sent copies of the milter's own headers (lim.own) are counted
// whatever the caps.
func (msg *messageState) addHeader(name, value string, lim limits) {
	for _, canon := range lim.own {
		if strings.EqualFold(name, canon) {
			if msg.ownHeaders == nil {
				msg.ownHeaders = make(map[string]int, 2)
			}
			msg.ownHeaders[canon]++
			break
		}
	}
	size := len(name) + len(value) + 4
	if len(msg.headers) >= lim.maxHeaders || msg.headerBytes+size > lim.headerBytes {
		msg.headersDropped++
		return
	}
	msg.headerBytes += size
	// The scanner's header reader gives the same form (scoring.NewHeader).
	msg.headers = append(msg.headers, scoring.NewHeader(name, value))
}

// addBody counts a body chunk and keeps it only while the sample has room.
func (msg *messageState) addBody(chunk []byte, lim limits) {
	msg.bodySize += int64(len(chunk))
	room := lim.bodySample - len(msg.body)
	if room <= 0 {
		if len(chunk) > 0 {
			msg.bodyTruncated = true
		}
		return
	}
	if len(chunk) > room {
		chunk = chunk[:room]
		msg.bodyTruncated = true
	}
	if need := len(msg.body) + len(chunk); need > cap(msg.body) {
		// Grow by doubling, but never past the sample size.
		grown := make([]byte, len(msg.body), min(lim.bodySample, max(need, 2*cap(msg.body), 4096)))
		copy(grown, msg.body)
		msg.body = grown
	}
	msg.body = append(msg.body, chunk...)
}

// message builds the scoring view of the message.
func (msg *messageState) message() *scoring.Message {
	return &scoring.Message{
		Headers:       msg.headers,
		Body:          msg.body,
		BodySize:      msg.bodySize,
		BodyTruncated: msg.bodyTruncated,
	}
}

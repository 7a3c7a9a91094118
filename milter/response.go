package milter

import (
	"strconv"
	"strings"

	gomilter "github.com/emersion/go-milter"

	"github.com/abusemilter/abusemilter/scoring"
)

// keepSession wraps a final response (accept, or a reply code at end of
// message) so that go-milter keeps this connection's backend: the library
// replaces the backend whenever Continue() is false, which would lose the
// connection state (client, HELO, login) for the next message.
type keepSession struct{ final gomilter.Response }

// Response implements gomilter.Response.
func (k keepSession) Response() *gomilter.Message { return k.final.Response() }

// Continue implements gomilter.Response.
func (keepSession) Continue() bool { return true }

// respAccept accepts the message without dropping the session's backend.
var respAccept gomilter.Response = keepSession{gomilter.RespAccept}

// fallbackReply is sent when a verdict carries a code the MTA would reject
// as malformed (Postfix drops the milter for a bad reply code).
const fallbackReply = "451 4.3.0 Temporary policy failure, try again later"

// ResponseFor maps a verdict to the milter response that enforces it: a
// plain accept for Accept, Hold and monitor verdicts, otherwise a custom SMTP
// reply (451 4.7.1, 452 4.5.3, 550 5.7.1 ...) naming the clause and rule.
// The reply is checked: a code that is not 4xx/5xx with an enhanced code of
// the same class becomes a generic 451 4.3.0 rather than an MTA error.
func ResponseFor(v scoring.Verdict) gomilter.Response {
	// A hold is an accept for the client: the quarantine that goes with it
	// is sent before (backend.Body).
	if v.Action == scoring.Accept || v.Action == scoring.Hold || v.Monitor {
		return respAccept
	}
	return replyResponse(v)
}

// replyResponse is the custom reply for a refusal.
func replyResponse(v scoring.Verdict) gomilter.Response {
	reply := v.Reply()
	if !validReply(v.Code, v.EnhancedCode) {
		reply = fallbackReply
	}
	return gomilter.NewResponseStr(byte(gomilter.ActReplyCode), reply)
}

// validReply reports whether code and enhanced code form a refusal the MTA
// accepts: 4xx with 4.x.y, or 5xx with 5.x.y.
func validReply(code int, enhanced string) bool {
	class := code / 100
	if class != 4 && class != 5 || code > 599 {
		return false
	}
	parts := strings.Split(enhanced, ".")
	if len(parts) != 3 || parts[0] != strconv.Itoa(class) {
		return false
	}
	for _, p := range parts[1:] {
		if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 999 {
			return false
		}
	}
	return true
}

// VerdictHeader formats the X-Abuse-Verdict value, e.g.
// "reject; rule=FROM_DOMAIN_NOT_OWNED; clause=impersonation; score=10".
// The action is what enforce mode would have done.
func VerdictHeader(v scoring.Verdict) string {
	var b strings.Builder
	b.WriteString(v.Action.String())
	if v.Rule != "" {
		b.WriteString("; rule=" + v.Rule)
	}
	if v.Clause != "" {
		b.WriteString("; clause=" + string(v.Clause))
	}
	b.WriteString("; score=" + formatScore(v.Score))
	if v.Code != 0 && v.Action != scoring.Accept {
		b.WriteString("; code=" + strconv.Itoa(v.Code))
	}
	if v.LimiterError != "" {
		b.WriteString("; limiter=unavailable")
	}
	return headerSafe(b.String())
}

// FindingsHeader formats the X-Abuse-Findings value, e.g.
// "FROM_DOMAIN_NOT_OWNED=10, DISPLAY_NAME_BRAND=3"; "" when there are none.
func FindingsHeader(fs []scoring.Finding) string {
	parts := make([]string, 0, len(fs))
	for _, f := range fs {
		parts = append(parts, f.Rule+"="+formatScore(f.Score))
	}
	return headerSafe(strings.Join(parts, ", "))
}

func formatScore(s float64) string { return strconv.FormatFloat(s, 'f', -1, 64) }

// maxHeaderValue bounds the values this milter adds.
const maxHeaderValue = 900

// headerSafe keeps a header value to printable ASCII on one line, whatever
// went into it: control characters (CR, LF included) and non-ASCII become
// '?', and the value is cut to maxHeaderValue bytes.
func headerSafe(s string) string {
	b := []byte(s)
	if len(b) > maxHeaderValue {
		b = b[:maxHeaderValue]
	}
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	return string(b)
}

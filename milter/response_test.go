package milter

import (
	"strings"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/abusemilter/abusemilter/scoring"
)

func TestResponseFor(t *testing.T) {
	reject := scoring.RejectVerdict(scoring.Impersonation, scoring.RuleFromNotOwned, "", nil, 10)
	deferV := scoring.DeferVerdict(scoring.SpamVolume, "ACCOUNT_MSG_RATE", "1/1h", time.Minute, nil)
	monitored := reject
	monitored.Monitor = true
	bad := reject
	bad.Code = 250
	badClass := deferV
	badClass.EnhancedCode = "5.7.1"
	tests := []struct {
		name     string
		v        scoring.Verdict
		wantCode byte
		wantText string
	}{
		{"accept", scoring.AcceptVerdict(nil, 0), byte(gomilter.ActAccept), ""},
		{"reject", reject, byte(gomilter.ActReplyCode), "550 5.7.1 Rejected under the e-mail abuse policy (impersonation: FROM_DOMAIN_NOT_OWNED)"},
		{"defer", deferV, byte(gomilter.ActReplyCode), "451 4.7.1 Deferred under the e-mail abuse policy (spam-volume: ACCOUNT_MSG_RATE 1/1h, retry in 60s)"},
		{"too many recipients", scoring.TooManyRecipientsVerdict(3), byte(gomilter.ActReplyCode), "452 4.5.3 Too many recipients"},
		{"monitor accepts", monitored, byte(gomilter.ActAccept), ""},
		{"2xx refusal becomes generic tempfail", bad, byte(gomilter.ActReplyCode), fallbackReply},
		{"mismatched enhanced class becomes generic tempfail", badClass, byte(gomilter.ActReplyCode), fallbackReply},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ResponseFor(tt.v)
			if !r.Continue() {
				t.Errorf("Continue() = false: go-milter would drop the connection's backend")
			}
			m := r.Response()
			if m.Code != tt.wantCode {
				t.Fatalf("code %q, want %q", m.Code, tt.wantCode)
			}
			text := strings.TrimSuffix(string(m.Data), "\x00")
			if !strings.HasPrefix(text, tt.wantText) {
				t.Fatalf("reply %q, want prefix %q", text, tt.wantText)
			}
		})
	}
}

func TestValidReply(t *testing.T) {
	for _, tt := range []struct {
		code int
		enh  string
		ok   bool
	}{
		{451, "4.7.1", true}, {550, "5.7.1", true}, {452, "4.5.3", true},
		{250, "2.0.0", false}, {451, "5.7.1", false}, {550, "5.7", false}, {600, "6.0.0", false}, {451, "4.x.1", false},
	} {
		if got := validReply(tt.code, tt.enh); got != tt.ok {
			t.Errorf("validReply(%d, %q) = %v, want %v", tt.code, tt.enh, got, tt.ok)
		}
	}
}

func TestHeaderValues(t *testing.T) {
	v := scoring.RejectVerdict(scoring.Impersonation, scoring.RuleFromNotOwned, "", []scoring.Finding{
		{Rule: scoring.RuleFromNotOwned, Score: 10}, {Rule: "DISPLAY_NAME_BRAND", Score: 2.5},
	}, 12.5)
	if got, want := VerdictHeader(v), "reject; rule=FROM_DOMAIN_NOT_OWNED; clause=impersonation; score=12.5; code=550"; got != want {
		t.Errorf("VerdictHeader = %q, want %q", got, want)
	}
	if got, want := FindingsHeader(v.Findings), "FROM_DOMAIN_NOT_OWNED=10, DISPLAY_NAME_BRAND=2.5"; got != want {
		t.Errorf("FindingsHeader = %q, want %q", got, want)
	}
	if got := VerdictHeader(scoring.AcceptVerdict(nil, 0)); got != "accept; score=0" {
		t.Errorf("accept header = %q", got)
	}
	evil := scoring.Verdict{Action: scoring.Reject, Rule: "X\r\nBcc: victim@example.org", Code: 550}
	got := VerdictHeader(evil) + FindingsHeader([]scoring.Finding{{Rule: "A\nB\x00é"}})
	if strings.ContainsAny(got, "\r\n\x00") || strings.ContainsFunc(got, func(r rune) bool { return r > 0x7e }) {
		t.Fatalf("header values carry control or non-ASCII characters: %q", got)
	}
	if long := VerdictHeader(scoring.Verdict{Action: scoring.Reject, Rule: strings.Repeat("A", 5000)}); len(long) > maxHeaderValue {
		t.Fatalf("header value of %d bytes, want at most %d", len(long), maxHeaderValue)
	}
}

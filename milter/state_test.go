package milter

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/abusemilter/abusemilter/scoring"
)

func TestApplyMacros(t *testing.T) {
	tests := []struct {
		name    string
		start   connState
		macros  []map[string]string
		want    connState
		wantQID string
	}{
		{
			name:   "mail stage fills client and login",
			macros: []map[string]string{{"{client_addr}": "192.0.2.7", "{client_name}": "mx.example.net", "{auth_authen}": "alice", "{auth_type}": "PLAIN"}},
			want:   connState{clientAddr: netip.MustParseAddr("192.0.2.7"), clientName: "mx.example.net", authLogin: "alice", authType: "PLAIN"},
		},
		{
			name:    "later packets without the macro keep the value",
			macros:  []map[string]string{{"{auth_authen}": "alice"}, {"i": "4XyZ"}, {}},
			want:    connState{authLogin: "alice"},
			wantQID: "4XyZ",
		},
		{
			name:   "bracketed and v4-mapped addresses",
			macros: []map[string]string{{"{client_addr}": "[::ffff:198.51.100.2]"}},
			want:   connState{clientAddr: netip.MustParseAddr("198.51.100.2")},
		},
		{
			name:   "garbage address is ignored",
			start:  connState{clientAddr: netip.MustParseAddr("192.0.2.1")},
			macros: []map[string]string{{"{client_addr}": "not-an-ip"}},
			want:   connState{clientAddr: netip.MustParseAddr("192.0.2.1")},
		},
		{
			name:    "queue id updates",
			macros:  []map[string]string{{"i": "A1"}, {"i": "B2"}},
			wantQID: "B2",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := tt.start
			var msg messageState
			for _, m := range tt.macros {
				cs.applyMacros(m, &msg)
			}
			if cs != tt.want {
				t.Errorf("conn state = %+v, want %+v", cs, tt.want)
			}
			if msg.queueID != tt.wantQID {
				t.Errorf("queue id = %q, want %q", msg.queueID, tt.wantQID)
			}
		})
	}
}

func TestSetClient(t *testing.T) {
	var cs connState
	cs.setClient("[192.0.2.9]", net.ParseIP("192.0.2.9"))
	if cs.clientAddr != netip.MustParseAddr("192.0.2.9") || cs.clientName != "[192.0.2.9]" {
		t.Fatalf("setClient: %+v", cs)
	}
	cs.setClient("", nil) // unix-socket local submission: nothing known
	if cs.clientAddr != netip.MustParseAddr("192.0.2.9") {
		t.Fatalf("setClient with no address erased the known one: %+v", cs)
	}
}

func TestBodySample(t *testing.T) {
	lim := limits{bodySample: 10, maxHeaders: 10, headerBytes: 1000}
	tests := []struct {
		name          string
		chunks        []string
		wantBody      string
		wantSize      int64
		wantTruncated bool
	}{
		{"empty", nil, "", 0, false},
		{"fits", []string{"abc", "def"}, "abcdef", 6, false},
		{"exactly the sample", []string{"0123456789"}, "0123456789", 10, false},
		{"cut inside a chunk", []string{"01234", "56789abc"}, "0123456789", 13, true},
		{"chunks past the sample", []string{"0123456789", "x", "yz"}, "0123456789", 13, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var msg messageState
			for _, c := range tt.chunks {
				msg.addBody([]byte(c), lim)
			}
			m := msg.message()
			if string(m.Body) != tt.wantBody || m.BodySize != tt.wantSize || m.BodyTruncated != tt.wantTruncated {
				t.Fatalf("got body %q size %d truncated %v, want %q %d %v", m.Body, m.BodySize, m.BodyTruncated, tt.wantBody, tt.wantSize, tt.wantTruncated)
			}
		})
	}
}

// A large body costs only the sample: the kept slice never grows past it.
func TestBodySampleBoundedMemory(t *testing.T) {
	lim := limits{bodySample: 256 << 10}
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	var msg messageState
	for range 50 << 20 / len(chunk) {
		msg.addBody(chunk, lim)
	}
	if cap(msg.body) > lim.bodySample || len(msg.body) != lim.bodySample {
		t.Fatalf("body len %d cap %d, want both %d", len(msg.body), cap(msg.body), lim.bodySample)
	}
	if msg.bodySize != 50<<20 || !msg.bodyTruncated {
		t.Fatalf("size %d truncated %v", msg.bodySize, msg.bodyTruncated)
	}
}

func TestHeaders(t *testing.T) {
	lim := limits{bodySample: 1, maxHeaders: 3, headerBytes: 1 << 10, own: []string{HeaderVerdict, HeaderFindings}}
	var msg messageState
	in := []scoring.Header{
		{Name: "From", Value: " Alice <alice@example.com>"},
		{Name: "x-abuse-verdict", Value: "accept"},
		{Name: "Subject", Value: "folded\r\n\tline"},
		{Name: "X-Abuse-Findings", Value: "NONE=0"},
		{Name: "X-ABUSE-VERDICT", Value: "accept"},
	}
	for _, h := range in {
		msg.addHeader(h.Name, h.Value, lim)
	}
	got := msg.message().Headers
	// As the header reader gives them: folds joined by "\n" (scoring.NewHeader).
	if len(got) != 3 || got[0] != in[0] || got[1] != in[1] || got[2] != (scoring.Header{Name: "Subject", Value: "folded\n\tline"}) {
		t.Fatalf("kept headers %q, want the first three as received, folds as LF", got)
	}
	if msg.headersDropped != 2 {
		t.Fatalf("dropped %d, want 2", msg.headersDropped)
	}
	if msg.ownHeaders[HeaderVerdict] != 2 || msg.ownHeaders[HeaderFindings] != 1 {
		t.Fatalf("own header counts %v: every client X-Abuse-* must be counted, past the cap too", msg.ownHeaders)
	}

	small := limits{maxHeaders: 100, headerBytes: 30}
	var m2 messageState
	m2.addHeader("A", "0123456789", small)
	m2.addHeader("B", "0123456789abcdefghij", small)
	m2.addHeader("C", "x", small)
	if n := len(m2.headers); n != 2 || m2.headers[1].Name != "C" {
		t.Fatalf("byte cap: kept %q", m2.headers)
	}
}

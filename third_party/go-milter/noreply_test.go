package milter

// Tests of the abusemilter patches (PATCHES.md): negotiation from the MTA's
// offer, no reply to commands whose SMFIP_NR_* option was agreed, the
// unknown-command event and the client's reading of the macro lists.

import (
	"net"
	"testing"
	"time"

	"github.com/emersion/go-message/textproto"
)

// allV6 is every protocol option of version 6, as Postfix 3.x offers them.
const allV6 OptProtocol = 0x1fffff

// lean asks for no reply wherever it never refuses, skips what it does not
// need, and records what it was offered.
type lean struct {
	NoOpMilter
	want    OptProtocol
	offered OptProtocol
	headers int
	body    int
}

func (l *lean) Negotiate(_ uint32, _ OptAction, offered OptProtocol) (OptAction, OptProtocol) {
	l.offered = offered
	return OptAddHeader | OptSetSymList, l.want
}

func (l *lean) Header(string, string, *Modifier) (Response, error) {
	l.headers++
	return RespContinue, nil
}

func (l *lean) BodyChunk([]byte, *Modifier) (Response, error) {
	l.body++
	return RespContinue, nil
}

func (l *lean) Body(m *Modifier) (Response, error) {
	if err := m.AddHeader("X-Seen", "yes"); err != nil {
		return nil, err
	}
	return RespAccept, nil
}

func serveLean(t *testing.T, l *lean) string {
	t.Helper()
	s := Server{
		NewMilter: func() Milter { return l },
		SymList:   map[Stage][]string{StageMailFrom: {"{auth_authen}", "i"}, StageEOM: {"i"}},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return ln.Addr().String()
}

// A message through a session that agreed no reply for connect, HELO,
// headers, end of headers and body: the client (which then reads no reply
// either) gets the end-of-message actions in order. A reply written for any
// of those commands would be read as the answer to a later one.
func TestNoReplyNegotiated(t *testing.T) {
	want := OptNoConnReply | OptNoHeloReply | OptNoHeaderReply | OptNoEOHReply | OptNoBodyReply | OptNoUnknown | OptNoData
	l := &lean{want: want}
	addr := serveLean(t, l)
	cl := NewClientWithOptions("tcp", addr, ClientOptions{
		ActionMask: OptAddHeader | OptChangeHeader | OptSetSymList, ProtocolMask: allV6,
		ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
	})
	s, err := cl.Session()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.ProtocolOpts != want {
		t.Fatalf("agreed protocol 0x%x, want 0x%x", s.ProtocolOpts, want)
	}
	if l.offered != allV6 {
		t.Fatalf("the milter was offered 0x%x, want 0x%x", l.offered, allV6)
	}
	if got := s.SymList[StageMailFrom]; len(got) != 2 || got[0] != "{auth_authen}" || got[1] != "i" {
		t.Fatalf("macro list for MAIL %q, want [{auth_authen} i]", got)
	}
	for i := 0; i < 2; i++ { // two messages on one connection
		if i == 0 {
			must(t)(s.Conn("host", FamilyInet, 25, "192.0.2.1"))
			must(t)(s.Helo("helo.example"))
		}
		must(t)(s.Mail("a@example.com", nil))
		must(t)(s.Rcpt("b@example.org", nil))
		hdr := textproto.Header{}
		hdr.Add("Subject", "one")
		hdr.Add("From", "a@example.com")
		must(t)(s.Header(hdr))
		for j := 0; j < 3; j++ {
			must(t)(s.BodyChunk([]byte("body\r\n")))
		}
		mods, act, err := s.End()
		if err != nil || act.Code != ActAccept {
			t.Fatalf("message %d: end of message %v, %v; want accept", i, act, err)
		}
		if len(mods) != 1 || mods[0].Code != ActAddHeader {
			t.Fatalf("message %d: modifications %+v, want one added header", i, mods)
		}
		if err := s.Abort(); err != nil {
			t.Fatal(err)
		}
	}
	if l.headers != 4 || l.body != 6 {
		t.Fatalf("the milter saw %d headers and %d body chunks, want 4 and 6", l.headers, l.body)
	}
}

func must(t *testing.T) func(*Action, error) {
	return func(act *Action, err error) {
		t.Helper()
		if err != nil || act.Code != ActContinue {
			t.Fatalf("got %v, %v; want continue", act, err)
		}
	}
}

// The milter asks only for what the MTA offered, and announces version 6
// only when it asks for an option beyond version 2 (and never above the
// MTA's version).
func TestNegotiateWithinOffer(t *testing.T) {
	for _, tc := range []struct {
		name        string
		mtaVersion  uint32
		offered     OptProtocol
		want        OptProtocol
		wantProto   OptProtocol
		wantVersion uint32
	}{
		{"nothing offered", 6, 0, OptNoHeaderReply | OptNoBodyReply, 0, 2},
		{"version 2 options only", 6, allV6, OptNoEOH, OptNoEOH, 2},
		{"no-reply options", 6, allV6, OptNoHeaderReply | OptNoBodyReply, OptNoHeaderReply | OptNoBodyReply, 6},
		{"partly offered", 6, OptNoHeaderReply, OptNoHeaderReply | OptNoBodyReply, OptNoHeaderReply, 6},
		{"older MTA", 4, OptNoHeaderReply | OptNoData, OptNoData, OptNoData, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &lean{want: tc.want}
			sess := milterSession{backend: l, server: &Server{}}
			data := make([]byte, 12)
			putUint32(data[0:], tc.mtaVersion)
			putUint32(data[4:], uint32(OptAddHeader|OptSetSymList))
			putUint32(data[8:], uint32(tc.offered))
			resp, err := sess.Process(&Message{Code: byte(CodeOptNeg), Data: data})
			if err != nil {
				t.Fatal(err)
			}
			reply := resp.Response().Data
			version, proto := getUint32(reply[0:]), OptProtocol(getUint32(reply[8:]))
			if version != tc.wantVersion || proto != tc.wantProto || sess.negotiated != tc.wantProto {
				t.Fatalf("replied version %d, protocol 0x%x (session 0x%x); want %d, 0x%x", version, proto, sess.negotiated, tc.wantVersion, tc.wantProto)
			}
		})
	}
}

// An unknown SMTP command is let through with a reply, or without one when
// SMFIP_NR_UNKN was agreed; upstream closed the session.
func TestUnknownCommand(t *testing.T) {
	sess := milterSession{backend: NoOpMilter{}, server: &Server{}}
	resp, err := sess.Process(&Message{Code: byte(CodeUnknown), Data: []byte("XYZZY\x00")})
	if err != nil || resp == nil || ActionCode(resp.Response().Code) != ActContinue {
		t.Fatalf("unknown command: %v, %v; want continue", resp, err)
	}
	sess.negotiated = OptNoUnknownReply
	if !sess.noReply(CodeUnknown) || sess.noReply(CodeMail) {
		t.Fatal("SMFIP_NR_UNKN must silence the unknown command's reply and nothing else")
	}
}

func putUint32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
}

func getUint32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

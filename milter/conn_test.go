package milter

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"testing/iotest"
	"time"

	"go.uber.org/zap"
)

// readerConn is a net.Conn that reads from r; other methods do nothing.
type readerConn struct {
	net.Conn
	r io.Reader
}

func (c *readerConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *readerConn) SetReadDeadline(time.Time) error  { return nil }
func (c *readerConn) SetWriteDeadline(time.Time) error { return nil }
func (c *readerConn) Close() error                     { return nil }

func packet(code byte, payload string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(payload)+1))
	return append(append(b, code), payload...)
}

// FuzzFraming checks that the framing reader hands go-milter exactly the
// bytes of the stream, packet by packet, and stops at the first packet
// whose declared length is over the cap, before any of it is read.
func FuzzFraming(f *testing.F) {
	f.Add(append(packet('O', "\x00\x00\x00\x06\x00\x00\x01\xff\x00\x00\x00\x00"), packet('M', "<a@example.com>\x00")...), uint16(100), false)
	f.Add([]byte{0x80, 0, 0, 0, 'O'}, uint16(1000), true)
	f.Add(append(packet('B', string(make([]byte, 300))), packet('E', "")...), uint16(200), true)
	f.Add([]byte{0, 0}, uint16(10), false)
	f.Fuzz(func(t *testing.T, data []byte, maxPacket uint16, oneByte bool) {
		var r io.Reader = bytes.NewReader(data)
		if oneByte {
			r = iotest.OneByteReader(r)
		}
		srv := New(Options{})
		c := &sessionConn{Conn: &readerConn{r: r}, srv: srv, log: zap.NewNop(), maxPacket: uint32(maxPacket)}
		pos := 0
		for {
			var n uint32
			err := binary.Read(c, binary.BigEndian, &n)
			if errors.Is(err, errPacketTooLarge) {
				declared := binary.BigEndian.Uint32(data[pos:])
				if declared <= uint32(maxPacket) {
					t.Fatalf("packet of %d bytes refused under a cap of %d", declared, maxPacket)
				}
				if srv.Stats().OversizedPackets != 1 {
					t.Fatal("oversized packet not counted")
				}
				return
			}
			if err != nil {
				if len(data)-pos >= 4 {
					t.Fatalf("header read failed with %d bytes left: %v", len(data)-pos, err)
				}
				return
			}
			if n > uint32(maxPacket) {
				t.Fatalf("length %d passed a cap of %d", n, maxPacket)
			}
			if want := binary.BigEndian.Uint32(data[pos:]); n != want {
				t.Fatalf("length %d, stream says %d", n, want)
			}
			pos += 4
			buf := make([]byte, n)
			got, err := io.ReadFull(c, buf)
			if !bytes.Equal(buf[:got], data[pos:pos+got]) {
				t.Fatalf("payload bytes differ at offset %d", pos)
			}
			if err != nil {
				if pos+int(n) <= len(data) {
					t.Fatalf("payload read failed with the bytes available: %v", err)
				}
				return
			}
			pos += int(n)
		}
	})
}

// TestNegotiationSplitReply writes go-milter's OPTNEG reply in every split
// of one and two writes: the protocol word is limited to the MTA's offer
// however the bytes arrive, the rest passes untouched, and the caller's
// buffer is never modified.
func TestNegotiationSplitReply(t *testing.T) {
	const asked = 1<<20 | 1<<7 // SMFIP_HDR_LEADSPC and SMFIP_NR_HDR
	reply := binary.BigEndian.AppendUint32(nil, 1+12+3)
	reply = append(reply, 'O')
	for _, w := range []uint32{2, 0x111, asked} {
		reply = binary.BigEndian.AppendUint32(reply, w)
	}
	reply = append(reply, 'x', 'y', 0)
	for _, tc := range []struct {
		offered, want uint32
		leadingSpace  bool
	}{
		{0, 0, false},
		{1 << 20, 1 << 20, true},
		{0x1fffff, asked, true},
		{1 << 7, 1 << 7, false},
	} {
		for split := 0; split <= len(reply); split++ {
			orig := append([]byte(nil), reply...)
			n := negotiation{offered: tc.offered}
			var out []byte
			out = append(out, n.adjustReply(orig[:split])...)
			out = append(out, n.adjustReply(orig[split:])...)
			if !bytes.Equal(orig, reply) {
				t.Fatalf("offered 0x%x, split at %d: the caller's buffer was modified", tc.offered, split)
			}
			want := append([]byte(nil), reply...)
			binary.BigEndian.PutUint32(want[13:], tc.want)
			if !bytes.Equal(out, want) {
				t.Fatalf("offered 0x%x, split at %d: wrote %x, want %x", tc.offered, split, out, want)
			}
			c := sessionConn{neg: n}
			if n.agreed != tc.want || c.leadingSpace() != tc.leadingSpace {
				t.Fatalf("offered 0x%x, split at %d: agreed 0x%x (leading space %v), want 0x%x (%v)", tc.offered, split, n.agreed, c.leadingSpace(), tc.want, tc.leadingSpace)
			}
		}
	}
}

// TestNegotiationOtherFirstReply leaves a first reply that is not an OPTNEG
// as it is (a peer that skipped the negotiation).
func TestNegotiationOtherFirstReply(t *testing.T) {
	reply := []byte{0, 0, 0, 17, 'y', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	n := negotiation{}
	if out := n.adjustReply(reply); !bytes.Equal(out, reply) || n.agreed != 0 {
		t.Fatalf("wrote %x (agreed 0x%x), want it unchanged", out, n.agreed)
	}
}

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

package milter

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/textproto"
	"runtime/debug"
	"strings"
	"time"
)

var errCloseSession = errors.New("Stop current milter processing")

// maxPacketSize limits the command byte and payload before allocation.
const maxPacketSize = 1 << 20

// milterSession keeps session state during MTA communication
type milterSession struct {
	server   *Server
	actions  OptAction
	protocol OptProtocol
	conn     net.Conn
	headers  textproto.MIMEHeader
	macros   map[string]string
	backend  Milter

	// abusemilter patch: head, buf and msg are ReadPacket's, reused for
	// every command of the session.
	head [5]byte
	buf  []byte
	msg  Message

	// abusemilter patch: negotiated is the protocol options agreed in this
	// session's OPTNEG (what the milter asked for, within the MTA's offer);
	// its no-reply bits say which commands get no reply (see noReply).
	negotiated OptProtocol
}

// noReplyFlag maps each command to the protocol option (SMFIP_NR_*) with
// which the milter tells the MTA that it will not reply to that command.
var noReplyFlag = map[Code]OptProtocol{
	CodeConn:    OptNoConnReply,
	CodeHelo:    OptNoHeloReply,
	CodeMail:    OptNoMailReply,
	CodeRcpt:    OptNoRcptReply,
	CodeData:    OptNoDataReply,
	CodeUnknown: OptNoUnknownReply,
	CodeHeader:  OptNoHeaderReply,
	CodeEOH:     OptNoEOHReply,
	CodeBody:    OptNoBodyReply,
}

// noReply reports whether the MTA reads no reply to command code in this
// session: the milter negotiated the command's SMFIP_NR_* option.
func (m *milterSession) noReply(code Code) bool {
	flag, ok := noReplyFlag[code]
	return ok && m.negotiated&flag != 0
}

// v2ProtocolMask holds the protocol options protocol version 2 defines; a
// milter that asks for any other option announces version 6.
const v2ProtocolMask = OptNoConnect | OptNoHelo | OptNoMailFrom | OptNoRcptTo | OptNoBody | OptNoHeaders | OptNoEOH

// negotiate computes the OPTNEG reply's version, actions and protocol
// options from the MTA's OPTNEG payload (version, actions and protocol
// options, three 32-bit words; an MTA may send fewer).
func (m *milterSession) negotiate(data []byte) (version uint32, actions OptAction, protocol OptProtocol) {
	actions, protocol = m.actions, m.protocol
	var mtaVersion uint32
	var mtaActions OptAction
	var offered OptProtocol
	full := len(data) >= 12
	if full {
		mtaVersion = binary.BigEndian.Uint32(data[0:4])
		mtaActions = OptAction(binary.BigEndian.Uint32(data[4:8]))
		offered = OptProtocol(binary.BigEndian.Uint32(data[8:12]))
		if n, ok := m.backend.(Negotiator); ok {
			actions, protocol = n.Negotiate(mtaVersion, mtaActions, offered)
		}
		// Ask only for what the MTA offered: Sendmail drops a milter that
		// asks for more, and a no-reply option the MTA did not agree to
		// would leave it waiting for a reply that never comes.
		protocol &= offered
	}
	version = serverProtocolVersion
	if protocol&^v2ProtocolMask != 0 {
		// Options of protocol version 6 (no-reply flags, NOUNKNOWN,
		// NODATA, HDR_LEADSPC ...): say so, within the MTA's version.
		version = 6
		if full && mtaVersion >= 2 && mtaVersion < version {
			version = mtaVersion
		}
	}
	return version, actions, protocol
}

// ReadPacket reads incoming milter packet
//
// abusemilter patch: the packet is read into the session's own buffer,
// which the next command reuses: every command but a body chunk is decoded
// into strings (or read) by Process before the next read, and a body chunk,
// which the milter's BodyChunk may keep, gets a slice of its own. Upstream
// allocated every packet and its 4-byte length anew (a sixth of the
// milter's garbage per message).
func (c *milterSession) ReadPacket() (*Message, error) {
	code, data, err := readPacketData(c.conn, &c.head, &c.buf)
	if err != nil {
		return nil, err
	}
	c.msg = Message{Code: code, Data: data}
	return &c.msg, nil
}

func readPacket(conn net.Conn, timeout time.Duration) (*Message, error) {
	if timeout != 0 {
		conn.SetReadDeadline(time.Now().Add(timeout))
		defer conn.SetReadDeadline(time.Time{})
	}
	var head [5]byte
	code, data, err := readPacketData(conn, &head, nil)
	if err != nil {
		return nil, err
	}
	return &Message{Code: code, Data: data}, nil
}

// readPacketData reads one packet: its length, its command code and its
// data. With reuse, the data is read into *reuse (grown as needed) unless
// the command is a body chunk; without, into a new slice.
func readPacketData(r io.Reader, head *[5]byte, reuse *[]byte) (byte, []byte, error) {
	// read packet length
	if _, err := io.ReadFull(r, head[:4]); err != nil {
		return 0, nil, err
	}
	length := binary.BigEndian.Uint32(head[:4])
	if length == 0 {
		return 0, nil, errors.New("milter: invalid zero-length packet")
	}
	if length > maxPacketSize {
		return 0, nil, fmt.Errorf("milter: packet length %d exceeds %d bytes", length, maxPacketSize)
	}
	// read the command code, then the packet data
	if _, err := io.ReadFull(r, head[4:5]); err != nil {
		return 0, nil, err
	}
	code, n := head[4], int(length-1)
	var data []byte
	if reuse != nil && Code(code) != CodeBody {
		if cap(*reuse) < n {
			size := 4096
			if n > size {
				size = n
			}
			*reuse = make([]byte, size)
		}
		data = (*reuse)[:n]
	} else {
		data = make([]byte, n)
	}
	if _, err := io.ReadFull(r, data); err != nil {
		return 0, nil, err
	}
	return code, data, nil
}

// WritePacket sends a milter response packet to socket stream
func (m *milterSession) WritePacket(msg *Message) error {
	return writePacket(m.conn, msg, 0)
}

func writePacket(conn net.Conn, msg *Message, timeout time.Duration) error {
	if timeout != 0 {
		conn.SetWriteDeadline(time.Now().Add(timeout))
		defer conn.SetWriteDeadline(time.Time{})
	}

	// abusemilter patch: one write of exactly the packet instead of a new
	// 4 KiB bufio.Writer per packet (which made most of a milter's garbage:
	// about 22 replies per message). A large payload (a client's BODY
	// chunk) is written after its 5-byte head without being copied.
	var head [5]byte
	binary.BigEndian.PutUint32(head[:4], uint32(len(msg.Data)+1))
	head[4] = msg.Code
	if len(msg.Data) > 4096 {
		if _, err := conn.Write(head[:]); err != nil {
			return err
		}
		_, err := conn.Write(msg.Data)
		return err
	}
	packet := make([]byte, 0, len(head)+len(msg.Data))
	packet = append(append(packet, head[:]...), msg.Data...)
	_, err := conn.Write(packet)
	return err
}

// Process processes incoming milter commands
func (m *milterSession) Process(msg *Message) (Response, error) {
	switch Code(msg.Code) {
	case CodeAbort:
		// abort current message and start over
		defer func() {
			m.headers = nil
			m.macros = nil
		}()
		return nil, m.backend.Abort(newModifier(m))

	case CodeBody:
		// body chunk
		return m.backend.BodyChunk(msg.Data, newModifier(m))

	case CodeConn:
		// new connection, get hostname
		hostname := readCString(msg.Data)
		if len(msg.Data) < len(hostname)+2 {
			return nil, errors.New("milter: malformed connect command")
		}
		msg.Data = msg.Data[len(hostname)+1:]
		// get protocol family
		protocolFamily := msg.Data[0]
		msg.Data = msg.Data[1:]
		// get port
		var port uint16
		if protocolFamily == '4' || protocolFamily == '6' {
			if len(msg.Data) < 2 {
				return RespTempFail, nil
			}
			port = binary.BigEndian.Uint16(msg.Data)
			msg.Data = msg.Data[2:]
		}
		// get address
		address := readCString(msg.Data)
		// convert address and port to human readable string
		family := map[byte]string{
			'U': "unknown",
			'L': "unix",
			'4': "tcp4",
			'6': "tcp6",
		}
		// run handler and return
		return m.backend.Connect(
			hostname,
			family[protocolFamily],
			port,
			net.ParseIP(address),
			newModifier(m))

	case CodeMacro:
		if len(msg.Data) == 0 {
			return nil, errors.New("milter: malformed macro command")
		}
		// convert data to Go strings
		data := decodeCStrings(msg.Data[1:])
		// define macros
		// abusemilter patch: the map is made at its final size (it grew
		// by doubling for every macro command before: the largest single
		// source of garbage per message in BenchmarkLoadCorpus).
		m.macros = make(map[string]string, (len(data)+1)/2)
		if len(data) != 0 {
			if len(data)%2 == 1 {
				data = append(data, "")
			}

			// store data in a map
			for i := 0; i < len(data); i += 2 {
				m.macros[data[i]] = data[i+1]
			}
		}
		// do not send response
		return nil, nil

	case CodeEOB:
		// call and return milter handler
		return m.backend.Body(newModifier(m))

	case CodeHelo:
		// helo command
		name := strings.TrimSuffix(string(msg.Data), null)
		return m.backend.Helo(name, newModifier(m))

	case CodeHeader:
		// make sure headers is initialized
		if m.headers == nil {
			m.headers = make(textproto.MIMEHeader)
		}
		// add new header to headers map
		headerData := decodeCStrings(msg.Data)
		// headers with an empty body appear as `text\x00\x00`, decodeCStrings will drop the empty body
		if len(headerData) == 1 {
			headerData = append(headerData, "")
		}
		if len(headerData) == 2 {
			m.headers.Add(headerData[0], headerData[1])
			// call and return milter handler
			return m.backend.Header(headerData[0], headerData[1], newModifier(m))
		}

	case CodeMail:
		// envelope from address
		from := readCString(msg.Data)
		return m.backend.MailFrom(strings.Trim(from, "<>"), newModifier(m))

	case CodeEOH:
		// end of headers
		return m.backend.Headers(m.headers, newModifier(m))

	case CodeOptNeg:
		// abusemilter patch: the reply is computed from the MTA's offer
		// (negotiate) instead of ignoring the request.
		version, actions, protocol := m.negotiate(msg.Data)
		m.negotiated = protocol
		var buffer bytes.Buffer
		// prepare response data
		for _, value := range []uint32{version, uint32(actions), uint32(protocol)} {
			if err := binary.Write(&buffer, binary.BigEndian, value); err != nil {
				return nil, err
			}
		}
		// append requested symlist
		if actions&OptSetSymList != 0 {
			for stage, macros := range m.server.SymList {
				binary.Write(&buffer, binary.BigEndian, stage)
				for i, macro := range macros {
					if i != 0 {
						buffer.WriteByte(' ')
					}
					buffer.WriteString(macro)
				}
				buffer.WriteByte(0)
			}
		}
		// build and send packet
		return NewResponse('O', buffer.Bytes()), nil

	case CodeQuit:
		// client requested session close
		return nil, errCloseSession

	case CodeRcpt:
		// envelope to address
		to := readCString(msg.Data)
		return m.backend.RcptTo(strings.Trim(to, "<>"), newModifier(m))

	case CodeData:
		// data, ignore

	case CodeUnknown:
		// abusemilter patch: an SMTP command the MTA did not know; the
		// Milter interface has no callback for it, so it is let through
		// (upstream closed the session). Negotiate OptNoUnknown not to
		// receive it at all.

	default:
		// print error and close session
		log.Printf("Unrecognized command code: %c", msg.Code)
		return nil, errCloseSession
	}

	// by default continue with next milter message
	return RespContinue, nil
}

// HandleMilterComands processes all milter commands in the same connection
func (m *milterSession) HandleMilterCommands() {
	defer func() {
		if v := recover(); v != nil {
			log.Printf("panic handling command: %v\n%s", v, debug.Stack())
		}

		m.conn.Close()
	}()

	for {
		msg, err := m.ReadPacket()
		if err != nil {
			if err != io.EOF {
				log.Printf("Error reading milter command: %v", err)
			}
			return
		}

		resp, err := m.Process(msg)
		if err != nil {
			if err != errCloseSession {
				// log error condition
				log.Printf("Error performing milter command: %v", err)
			}
			return
		}

		// abusemilter patch: no reply to a command whose SMFIP_NR_* option
		// was negotiated; the MTA does not read one. A final response
		// there cannot reach the MTA, so it is dropped with a log line.
		if m.noReply(Code(msg.Code)) {
			if resp != nil && !resp.Continue() {
				log.Printf("milter: response %q to command %q dropped: no reply negotiated for it", resp.Response().Code, msg.Code)
			}
			continue
		}

		// ignore empty responses
		if resp != nil {
			// send back response message
			if err = m.WritePacket(resp.Response()); err != nil {
				log.Printf("Error writing packet: %v", err)
				return
			}

			if !resp.Continue() {
				// prepare backend for next message
				m.backend = m.server.NewMilter()
			}
		}
	}
}

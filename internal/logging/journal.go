package logging

import (
	"io"
	"os"
	"strconv"
	"strings"

	"go.uber.org/zap/buffer"
	"go.uber.org/zap/zapcore"
)

// JournalStreamEnv is the variable systemd sets for a service whose
// standard output or error is connected to the journal: "DEVICE:INODE" of
// that stream (systemd.exec(5)).
const JournalStreamEnv = "JOURNAL_STREAM"

// toJournal reports whether out is the stream JOURNAL_STREAM names: the
// variable is set and out is a file with that device and inode. Comparing
// them, as systemd.exec(5) advises, keeps the prefixes away from a
// terminal or a pipe that a child inherited the variable with (a test
// run from a systemd service, say).
func toJournal(out io.Writer) bool {
	v := os.Getenv(JournalStreamEnv)
	if v == "" {
		return false
	}
	f, ok := out.(*os.File)
	if !ok {
		return false
	}
	devS, inoS, ok := strings.Cut(v, ":")
	if !ok {
		return false
	}
	dev, err1 := strconv.ParseUint(devS, 10, 64)
	ino, err2 := strconv.ParseUint(inoS, 10, 64)
	if err1 != nil || err2 != nil {
		return false
	}
	fdev, fino, ok := fileID(f)
	return ok && fdev == dev && fino == ino
}

// Priority is the syslog priority (RFC 5424 severity) a line of this level
// carries in the journal: warnings (an account locked, the rate store's
// fail mode entered, a reload refused) are 4, errors 3.
func Priority(l zapcore.Level) int {
	switch {
	case l <= zapcore.DebugLevel:
		return 7
	case l == zapcore.InfoLevel:
		return 6
	case l == zapcore.WarnLevel:
		return 4
	case l == zapcore.ErrorLevel:
		return 3
	}
	return 2 // dpanic, panic, fatal
}

var priorityPool = buffer.NewPool()

// priorityEncoder prefixes every line with "<N>", its syslog priority,
// which journald takes off the line and stores as PRIORITY= (with the
// unit's SyslogLevelPrefix=yes, the default), so that journalctl -p works
// and SyslogFacility= routes the lines to mail.log.
type priorityEncoder struct{ zapcore.Encoder }

func withPriority(enc zapcore.Encoder) zapcore.Encoder { return priorityEncoder{enc} }

// Clone implements zapcore.Encoder.
func (e priorityEncoder) Clone() zapcore.Encoder { return priorityEncoder{e.Encoder.Clone()} }

// EncodeEntry implements zapcore.Encoder.
func (e priorityEncoder) EncodeEntry(ent zapcore.Entry, fields []zapcore.Field) (*buffer.Buffer, error) {
	line, err := e.Encoder.EncodeEntry(ent, fields)
	if err != nil {
		return nil, err
	}
	out := priorityPool.Get()
	out.AppendByte('<')
	out.AppendInt(int64(Priority(ent.Level)))
	out.AppendByte('>')
	_, _ = out.Write(line.Bytes())
	line.Free()
	return out, nil
}

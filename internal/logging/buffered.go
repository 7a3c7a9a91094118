package logging

import (
	"errors"
	"io"
	"time"

	"go.uber.org/zap/zapcore"
)

// DefaultFlushInterval is how long a buffered logger keeps lines before it
// writes them (Options.FlushInterval): short enough for an operator tailing
// the log, long enough that a busy milter writes its decision lines in a few
// large writes instead of one system call per line on the mail path.
const DefaultFlushInterval = 250 * time.Millisecond

// bufferSize is what a buffered logger holds at most: a line that does not
// fit makes the writing goroutine flush first, so memory stays bounded and
// nothing is dropped.
const bufferSize = 256 << 10

// bufferedOutput wraps out so that lines are collected in memory and written
// on a timer (zap's BufferedWriteSyncer: one goroutine, started by the first
// line). Sync, which zap calls through Logger.Sync, writes what is held: the
// daemon calls it when it stops, so a SIGTERM loses nothing; a SIGHUP
// (reload) does not stop the writer and loses nothing either.
func bufferedOutput(out io.Writer, interval time.Duration) *zapcore.BufferedWriteSyncer {
	return &zapcore.BufferedWriteSyncer{
		WS:            zapcore.AddSync(writeOnly{out}),
		Size:          bufferSize,
		FlushInterval: interval,
	}
}

// flushAbove is a core that writes its buffer out after every entry at or
// above level, and after every entry whose message is not one of the
// buffered ones (when that set is given), so that only the lines of the
// mail path wait: warnings and errors (a lock, the store's fail mode, a
// crash's last words) and lifecycle lines (ready, reloaded, stopping) reach
// the log at once, with everything held before them, in order.
type flushAbove struct {
	zapcore.Core
	level    zapcore.Level
	buffered map[string]bool // messages that may wait; nil: all below level
}

func (c flushAbove) With(fields []zapcore.Field) zapcore.Core {
	return flushAbove{Core: c.Core.With(fields), level: c.level, buffered: c.buffered}
}

func (c flushAbove) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c flushAbove) Write(e zapcore.Entry, fields []zapcore.Field) error {
	err := c.Core.Write(e, fields)
	if e.Level >= c.level || (c.buffered != nil && !c.buffered[e.Message]) {
		err = errors.Join(err, c.Core.Sync())
	}
	return err
}

// writeOnly hides the Sync method of the output (an *os.File): standard
// error is usually a pipe or the journal's socket, where fsync fails with
// EINVAL; what was written is the kernel's once write returns, so a flush
// is a write and nothing more.
type writeOnly struct{ io.Writer }

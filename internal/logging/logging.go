// Package logging sets up the zap loggers of the binaries: a console encoder
// on a terminal, JSON lines otherwise (or as chosen), one line per entry
// whatever the field values contain (zap escapes control characters), and
// the standard library's log package redirected into zap so that messages
// from libraries (go-milter's panics and I/O errors) arrive as structured
// lines too. Under systemd, when standard error is the journal stream
// (JOURNAL_STREAM), every line starts with its syslog priority ("<4>"),
// see journal.go; redact.go hashes e-mail addresses for log.redact.
package logging

import (
	"fmt"
	"io"
	"os"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/term"
)

// Options selects the format and level.
type Options struct {
	// Format is "auto" (console when the output is a terminal, else JSON),
	// "console" or "json". Empty means auto.
	Format string
	// Level is debug, info, warn or error. Empty means info.
	Level string
	// Output is where lines go; nil means standard error.
	Output io.Writer
	// FlushInterval, when positive, buffers lines below warn level and
	// writes them at this interval and on Logger.Sync (see buffered.go);
	// zero writes every line at once.
	FlushInterval time.Duration
	// Buffered, with FlushInterval, limits the buffering to entries with
	// these messages (the mail path's lines); any other entry is written
	// at once with what was held before it. Empty: every entry below warn
	// may wait.
	Buffered []string
}

// New builds a logger. Its Level can be changed later through the returned
// AtomicLevel (e.g. on config reload).
func New(opts Options) (*zap.Logger, zap.AtomicLevel, error) {
	out := opts.Output
	if out == nil {
		out = os.Stderr
	}
	level := zap.NewAtomicLevel()
	if err := SetLevel(level, opts.Level); err != nil {
		return nil, level, err
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.TimeKey = "ts"
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	encCfg.EncodeDuration = zapcore.StringDurationEncoder
	var enc zapcore.Encoder
	switch opts.Format {
	case "", "auto":
		if isTerminal(out) {
			enc = consoleEncoder(encCfg)
		} else {
			enc = zapcore.NewJSONEncoder(encCfg)
		}
	case "console":
		enc = consoleEncoder(encCfg)
	case "json":
		enc = zapcore.NewJSONEncoder(encCfg)
	default:
		return nil, level, fmt.Errorf("log format %q: want auto, console or json", opts.Format)
	}
	if toJournal(out) {
		enc = withPriority(enc) // journal.go
	}
	ws := zapcore.Lock(zapcore.AddSync(out))
	var core zapcore.Core = zapcore.NewCore(enc, ws, level)
	if opts.FlushInterval > 0 {
		ws = bufferedOutput(out, opts.FlushInterval)
		fa := flushAbove{Core: zapcore.NewCore(enc, ws, level), level: zapcore.WarnLevel}
		if len(opts.Buffered) > 0 {
			fa.buffered = make(map[string]bool, len(opts.Buffered))
			for _, m := range opts.Buffered {
				fa.buffered[m] = true
			}
		}
		core = fa
	}
	return zap.New(core, zap.ErrorOutput(ws)), level, nil
}

// SetLevel parses a level name into an AtomicLevel; empty means info.
func SetLevel(l zap.AtomicLevel, name string) error {
	if name == "" {
		name = "info"
	}
	lv, err := zapcore.ParseLevel(name)
	if err != nil {
		return fmt.Errorf("log level %q: want debug, info, warn or error", name)
	}
	l.SetLevel(lv)
	return nil
}

func consoleEncoder(cfg zapcore.EncoderConfig) zapcore.Encoder {
	cfg.EncodeLevel = zapcore.CapitalLevelEncoder
	cfg.EncodeTime = zapcore.ISO8601TimeEncoder
	return zapcore.NewConsoleEncoder(cfg)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// RedirectStdLog sends the standard log package's output to logger at warn
// level, under the name of the library that writes there; call the
// returned function to undo it.
func RedirectStdLog(logger *zap.Logger, name string) (restore func(), err error) {
	return zap.RedirectStdLogAt(logger.Named(name), zapcore.WarnLevel)
}

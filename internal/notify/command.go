package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"time"

	"go.uber.org/zap"
)

// commandEnv is the whole environment of the on-lock command: the daemon's
// own environment may hold secrets (Redis password, webhook tokens) and is
// not passed on.
var commandEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}

// maxCommandOutput bounds the output kept (and logged) of one run.
const maxCommandOutput = 4 << 10

// commandRunner runs the on-lock command for one event at a time (the
// sink's workers bound how many run at once).
type commandRunner struct {
	argv    []string
	timeout time.Duration
	log     *zap.Logger
}

// Command returns argv with the placeholders of ev filled in: {account},
// {reason}, {rule}, {by}, {until} (RFC 3339, empty for an open-ended lock),
// {event} and {event_id}. The arguments go to the program as they are,
// without a shell, so nothing in an account name or reason is interpreted;
// put "--" before them if the program takes options.
func Command(argv []string, ev Event) []string {
	until := ""
	if !ev.Until.IsZero() {
		until = ev.Until.UTC().Format(time.RFC3339)
	}
	r := strings.NewReplacer(
		"{account}", ev.Account,
		"{reason}", ev.Reason,
		"{rule}", ev.Rule,
		"{by}", ev.By,
		"{until}", until,
		"{event}", string(ev.Kind),
		"{event_id}", ev.ID,
	)
	out := make([]string, len(argv))
	for i, a := range argv {
		out[i] = r.Replace(a)
	}
	return out
}

// run runs the command for ev with the event's JSON on standard input,
// and logs its output.
func (c *commandRunner) run(ctx context.Context, ev Event) error {
	args := Command(c.argv, ev)
	input, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encoding event: %w", err)
	}
	start := time.Now()
	output, err := RunCommand(ctx, args, append(input, '\n'), c.timeout)
	fields := []zap.Field{
		zap.String("command", args[0]), zap.String("account", ev.Account),
		zap.String("event_id", ev.ID), zap.Duration("took", time.Since(start)),
		zap.String("output", output),
	}
	if err != nil {
		c.log.Warn("on-lock command failed", append(fields, zap.Error(err))...)
		return err
	}
	c.log.Info("on-lock command ran", fields...)
	return nil
}

// RunCommand runs argv (no shell, no PATH lookup of its own: argv[0] is a
// path) with stdin as its standard input, a minimal environment (the
// caller's may hold secrets), "/" as its directory and a timeout that kills
// its whole process group. It returns the first 4 KiB of its combined
// output. The on-lock command and the desk's release and purge commands
// run through it.
func RunCommand(ctx context.Context, argv []string, stdin []byte, timeout time.Duration) (string, error) {
	out := &cappedBuffer{max: maxCommandOutput}
	err := runCommand(ctx, argv, stdin, timeout, out, out)
	return out.String(), err
}

// ErrOutputTooLarge: a command printed more than RunCommandOutput keeps.
var ErrOutputTooLarge = errors.New("output too large")

// RunCommandOutput runs argv as RunCommand does, without input, and
// returns its standard output, at most maxOutput bytes (more is
// ErrOutputTooLarge); the first 4 KiB of its standard error go into the
// error of a run that fails. The desk's training copies (postcat) run
// through it.
func RunCommandOutput(ctx context.Context, argv []string, timeout time.Duration, maxOutput int) ([]byte, error) {
	out := &cappedBuffer{max: maxOutput}
	errOut := &cappedBuffer{max: maxCommandOutput}
	err := runCommand(ctx, argv, nil, timeout, out, errOut)
	switch {
	case err != nil:
		if msg := strings.TrimSpace(errOut.String()); msg != "" {
			err = fmt.Errorf("%w: %s", err, msg)
		}
		return nil, err
	case out.truncated:
		return nil, fmt.Errorf("command %q: more than %d bytes: %w", argv[0], maxOutput, ErrOutputTooLarge)
	}
	return out.buf.Bytes(), nil
}

// runCommand is the one way commands run: see RunCommand.
func runCommand(ctx context.Context, argv []string, stdin []byte, timeout time.Duration, stdout, stderr io.Writer) error {
	if len(argv) == 0 {
		return errors.New("no command")
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = commandEnv
	cmd.Dir = "/"
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	setProcessGroup(cmd)
	cmd.WaitDelay = 2 * time.Second // a grandchild holding the pipes open cannot hang us
	err := cmd.Run()
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("command %q timed out after %s: %w", argv[0], timeout, err)
		} else {
			err = fmt.Errorf("command %q: %w", argv[0], err)
		}
	}
	return err
}

// cappedBuffer keeps the first max bytes written to it and notes the rest.
type cappedBuffer struct {
	buf       bytes.Buffer
	max       int
	truncated bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room < len(p) {
		b.buf.Write(p[:max(room, 0)])
		b.truncated = true
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *cappedBuffer) String() string {
	s := strings.TrimRight(b.buf.String(), "\n")
	if b.truncated {
		s += " [output truncated]"
	}
	return s
}

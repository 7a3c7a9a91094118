package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = commandEnv
	cmd.Dir = "/"
	cmd.Stdin = bytes.NewReader(append(input, '\n'))
	out := &cappedBuffer{max: maxCommandOutput}
	cmd.Stdout, cmd.Stderr = out, out
	setProcessGroup(cmd)
	cmd.WaitDelay = 2 * time.Second // a grandchild holding the pipes open cannot hang us
	start := time.Now()
	err = cmd.Run()
	fields := []zap.Field{
		zap.String("command", args[0]), zap.String("account", ev.Account),
		zap.String("event_id", ev.ID), zap.Duration("took", time.Since(start)),
		zap.String("output", out.String()),
	}
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("command %q timed out after %s: %w", args[0], c.timeout, err)
		} else {
			err = fmt.Errorf("command %q: %w", args[0], err)
		}
		c.log.Warn("on-lock command failed", append(fields, zap.Error(err))...)
		return err
	}
	c.log.Info("on-lock command ran", fields...)
	return nil
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

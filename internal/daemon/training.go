package daemon

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/abusemilter/abusemilter/internal/atomicfile"
	"github.com/abusemilter/abusemilter/internal/config"
	"github.com/abusemilter/abusemilter/internal/notify"
	"github.com/abusemilter/abusemilter/ratelimit"
)

// maxTrainingCopy bounds a saved training copy (Postfix's default
// message_size_limit is 10 MB).
const maxTrainingCopy = 64 << 20

// trainingDir is the folder desk.training names for a request's
// decision; "" for none.
func trainingDir(t config.TrainingConfig, a ratelimit.DeskAction) string {
	if a == ratelimit.Purge {
		return t.PurgedDir
	}
	return t.ReleasedDir
}

// saveTrainingCopy saves the held message of a release or purge request
// into the decision's folder (desk.training), before the request is
// carried out: copy_command prints it (postcat -bh -q QUEUEID), and what
// it prints, without postcat's "*** ... ***" framing lines, becomes
// DIR/TIME-QUEUEID.eml, written atomically. It returns the file written,
// "" when the decision has no folder.
func saveTrainingCopy(ctx context.Context, cfg *config.DeskConfig, req ratelimit.DeskRequest, now time.Time) (string, error) {
	dir := trainingDir(cfg.Training, req.Action)
	if dir == "" {
		return "", nil
	}
	argv := DeskCommand(cfg.Training.CopyCommand, req)
	out, err := notify.RunCommandOutput(ctx, argv, cfg.CommandTimeout.Duration, maxTrainingCopy)
	if err != nil {
		return "", fmt.Errorf("training copy of %s: %w", req.QueueID, err)
	}
	msg := stripPostcatFraming(out)
	if len(bytes.TrimSpace(msg)) == 0 {
		return "", fmt.Errorf("training copy of %s: %q printed no message", req.QueueID, argv[0])
	}
	path := filepath.Join(dir, now.UTC().Format("20060102T150405.000000000Z")+"-"+fileSafe(req.QueueID)+".eml")
	if err := atomicfile.Write(path, msg, 0o640); err != nil {
		return "", fmt.Errorf("training copy of %s: %w", req.QueueID, err)
	}
	return path, nil
}

// stripPostcatFraming removes the lines postcat writes around a message
// ("*** MESSAGE CONTENTS ... ***", "*** HEADER EXTRACTED ... ***", "***
// MESSAGE FILE END ... ***") at its start and end; with -bh it writes
// none, and the output is the message as queued.
func stripPostcatFraming(out []byte) []byte {
	isFrame := func(line []byte) bool {
		l := bytes.TrimRight(line, "\r\n")
		return bytes.HasPrefix(l, []byte("*** ")) && bytes.HasSuffix(l, []byte(" ***"))
	}
	for len(out) > 0 {
		end := bytes.IndexByte(out, '\n') + 1
		if end == 0 {
			end = len(out)
		}
		if !isFrame(out[:end]) {
			break
		}
		out = out[end:]
	}
	for len(out) > 0 {
		body := bytes.TrimRight(out, "\n")
		start := bytes.LastIndexByte(body, '\n') + 1
		if !isFrame(body[start:]) {
			break
		}
		out = out[:start]
	}
	return out
}

// fileSafe keeps a queue id's letters and digits (what Postfix and
// Sendmail queue ids are made of) for a file name.
func fileSafe(id string) string {
	s := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return r
		}
		return '_'
	}, id)
	if s == "" {
		return "unknown"
	}
	return s
}

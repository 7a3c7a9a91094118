package testenv

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Swaks exit codes (from swaks(1), "EXIT CODES") that tests look for.
const (
	SwaksOK             = 0
	SwaksConnectFailed  = 2
	SwaksMailRejected   = 23 // MAIL FROM refused
	SwaksNoRcptAccepted = 24 // every RCPT TO refused
	SwaksDataRejected   = 25 // DATA command refused
	SwaksMessageRefused = 26 // refused after the final "." (end of message)
)

// SwaksOptions describe one swaks run: one SMTP session, one message.
type SwaksOptions struct {
	// Server is "127.0.0.1:PORT". Required.
	Server string
	// Helo is the EHLO name; "" lets swaks choose.
	Helo string
	// From is the envelope sender (MAIL FROM).
	From string
	// To are the envelope recipients (RCPT TO, one command each).
	To []string
	// XClientLogin and XClientAddr, when set, are sent as
	// "XCLIENT LOGIN=... ADDR=..." before MAIL (the server must authorize us).
	XClientLogin string
	XClientAddr  string
	// XClientName is sent as XCLIENT NAME=... when set.
	XClientName string
	// Headers are "Name: value" lines that add to or replace swaks's
	// default headers (Date, To, From, Subject, Message-Id, X-Mailer).
	Headers []string
	// Body replaces swaks's default body.
	Body string
	// Data, when set, is sent as the complete message (headers and body)
	// instead of swaks's generated one; Headers and Body are then ignored.
	Data []byte
	// Timeout is swaks's per-command timeout; zero means 20s.
	Timeout time.Duration
	// ExtraArgs are appended to the swaks command line.
	ExtraArgs []string
}

// SwaksResult is what a swaks run produced.
type SwaksResult struct {
	// ExitCode is swaks's exit status (see the Swaks* constants).
	ExitCode int
	// Transcript is swaks's output: " -> " client lines, "<-  " server
	// replies, "<** " server error replies, "*** " swaks's own errors.
	Transcript string
}

// Swaks runs swaks (one SMTP session, one message) and returns its exit
// code and transcript. It skips (or fails under ABUSEMILTER_REQUIRE_TOOLS=1)
// when swaks is missing, and fails the test only when swaks cannot be run
// at all: a refusal by the server is a result, not a failure.
func Swaks(t testing.TB, opts SwaksOptions) SwaksResult {
	t.Helper()
	swaks := RequireTool(t, "swaks")
	if opts.Server == "" {
		t.Fatalf("swaks: SwaksOptions.Server is required")
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = 20 * time.Second
	}
	args := []string{"--server", opts.Server, "--timeout", timeout.String(),
		"--from", opts.From, "--to", strings.Join(opts.To, ",")}
	if opts.Helo != "" {
		args = append(args, "--helo", opts.Helo)
	}
	if opts.XClientAddr != "" {
		args = append(args, "--xclient-addr", opts.XClientAddr)
	}
	if opts.XClientName != "" {
		args = append(args, "--xclient-name", opts.XClientName)
	}
	if opts.XClientLogin != "" {
		args = append(args, "--xclient-login", opts.XClientLogin)
	}
	var stdin []byte
	switch {
	case opts.Data != nil:
		args = append(args, "--data", "-")
		stdin = opts.Data
	default:
		for _, h := range opts.Headers {
			args = append(args, "--header", h)
		}
		if opts.Body != "" {
			args = append(args, "--body", "-")
			stdin = []byte(opts.Body)
		}
	}
	args = append(args, opts.ExtraArgs...)

	ctx, cancel := context.WithTimeout(context.Background(), 4*timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, swaks, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	res := SwaksResult{Transcript: string(out)}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr) && ctx.Err() == nil:
		res.ExitCode = exitErr.ExitCode()
	default:
		t.Fatalf("run swaks %q: %v\n%s", args, err, out)
	}
	return res
}

// ServerReplies returns the server's reply lines in order, without the
// transcript prefix ("<-  ", "<** ", "<~  ", "<~* ").
func (r SwaksResult) ServerReplies() []string {
	var replies []string
	for _, line := range strings.Split(r.Transcript, "\n") {
		if text, ok := serverLine(line); ok {
			replies = append(replies, text)
		}
	}
	return replies
}

// ErrorReplies returns the server's error replies (transcript lines
// "<** " or "<~* "), without the prefix.
func (r SwaksResult) ErrorReplies() []string {
	var replies []string
	for _, line := range strings.Split(r.Transcript, "\n") {
		for _, prefix := range []string{"<** ", "<~* "} {
			if strings.HasPrefix(line, prefix) {
				replies = append(replies, strings.TrimSpace(line[len(prefix):]))
			}
		}
	}
	return replies
}

// RepliesTo returns, for each client command starting with prefix (e.g.
// "RCPT TO:", "MAIL FROM:", "." for the end of the message), the server's
// reply that followed it (the last line of a multi-line reply).
func (r SwaksResult) RepliesTo(prefix string) []string {
	var replies []string
	waiting := false
	for _, line := range strings.Split(r.Transcript, "\n") {
		if cmd, ok := clientLine(line); ok {
			if waiting {
				replies = append(replies, "") // no reply seen before the next command
			}
			waiting = commandMatches(cmd, prefix)
			continue
		}
		if text, ok := serverLine(line); ok && waiting {
			if len(text) >= 4 && text[3] == '-' {
				continue // continuation line of a multi-line reply
			}
			replies = append(replies, text)
			waiting = false
		}
	}
	return replies
}

// EndOfDataReply returns the server's reply to the end of the message
// (the final "."), or "" when the session never got there.
func (r SwaksResult) EndOfDataReply() string {
	replies := r.RepliesTo(".")
	for i := len(replies) - 1; i >= 0; i-- {
		if replies[i] != "" {
			return replies[i]
		}
	}
	return ""
}

// commandMatches reports whether a client line is the command named by
// prefix (case-insensitive); the prefix "." matches only the lone dot that
// ends a message, not dot-stuffed message lines.
func commandMatches(cmd, prefix string) bool {
	if prefix == "." {
		return cmd == "."
	}
	return len(cmd) >= len(prefix) && strings.EqualFold(cmd[:len(prefix)], prefix)
}

func serverLine(line string) (string, bool) {
	for _, prefix := range []string{"<-  ", "<** ", "<~  ", "<~* "} {
		if strings.HasPrefix(line, prefix) {
			return strings.TrimRight(line[len(prefix):], "\r"), true
		}
	}
	return "", false
}

func clientLine(line string) (string, bool) {
	for _, prefix := range []string{" -> ", " ~> "} {
		if strings.HasPrefix(line, prefix) {
			return strings.TrimRight(line[len(prefix):], "\r"), true
		}
	}
	return "", false
}

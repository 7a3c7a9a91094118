package main

import (
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress drives the progress bar on stderr. A nil *progress (stderr is
// not a terminal, or --no-progress) does nothing.
type progress struct {
	bar      *progressbar.ProgressBar
	messages atomic.Int64
	start    time.Time
	last     atomic.Int64 // unix nanoseconds of the last description update
}

// startProgress shows a bar when stderr is a terminal: bytes read against
// the inputs' total size (when known, for an ETA), with messages per second.
func startProgress(opts options, stderr io.Writer) *progress {
	f, ok := stderr.(*os.File)
	if opts.NoProgress || !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	total := inputSize(opts.Inputs)
	p := &progress{start: time.Now()}
	p.bar = progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(stderr),
		progressbar.OptionShowBytes(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionSetPredictTime(total > 0),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetDescription("scanning"),
	)
	return p
}

// inputSize sums the sizes of the input files; -1 when unknown (stdin).
func inputSize(inputs []string) int64 {
	var total int64
	for _, in := range inputs {
		if in == "-" {
			return -1
		}
		_ = filepath.WalkDir(in, func(_ string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if fi, err := d.Info(); err == nil {
					total += fi.Size()
				}
			}
			return nil
		})
	}
	return total
}

// read is mailbox.Options.OnRead.
func (p *progress) read(n int64) {
	if p == nil {
		return
	}
	_ = p.bar.Add64(n)
}

// message counts one scanned message and refreshes the rate shown.
func (p *progress) message() {
	if p == nil {
		return
	}
	n := p.messages.Add(1)
	now := time.Now()
	if now.UnixNano()-p.last.Load() < int64(250*time.Millisecond) {
		return
	}
	p.last.Store(now.UnixNano())
	rate := float64(n) / now.Sub(p.start).Seconds()
	p.bar.Describe(formatCount(n) + " msgs, " + formatCount(int64(rate)) + " msg/s")
}

func (p *progress) finish() {
	if p == nil {
		return
	}
	_ = p.bar.Finish()
}

func formatCount(n int64) string {
	return strconv.FormatInt(n, 10)
}

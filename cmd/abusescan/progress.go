package main

import (
	"io"
	"os"
	"strconv"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/abusemilter/abusemilter/internal/scan"
)

// progressBar draws scan.Progress on stderr: bytes read against the
// inputs' total size (when known, for an ETA), with messages per second.
// A nil *progressBar does nothing.
type progressBar struct {
	w     io.Writer
	bar   *progressbar.ProgressBar // made at the first update, which has the total
	start time.Time
	last  time.Time // of the last description update
}

// newProgressBar returns a bar when stderr is a terminal and the bar is not
// turned off, else nil.
func newProgressBar(stderr io.Writer, off bool) *progressBar {
	f, ok := stderr.(*os.File)
	if off || !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return &progressBar{w: stderr, start: time.Now()}
}

// update is scan.Options.Progress (its calls never overlap).
func (p *progressBar) update(pr scan.Progress) {
	if p.bar == nil {
		p.bar = progressbar.NewOptions64(pr.Total,
			progressbar.OptionSetWriter(p.w),
			progressbar.OptionShowBytes(true),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionSetPredictTime(pr.Total > 0),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionSetDescription("scanning"),
		)
	}
	_ = p.bar.Set64(pr.Read)
	now := time.Now()
	if pr.Messages == 0 || now.Sub(p.last) < 250*time.Millisecond {
		return
	}
	p.last = now
	rate := float64(pr.Messages) / now.Sub(p.start).Seconds()
	p.bar.Describe(strconv.FormatInt(pr.Messages, 10) + " msgs, " + strconv.FormatInt(int64(rate), 10) + " msg/s")
}

func (p *progressBar) finish() {
	if p == nil || p.bar == nil {
		return
	}
	_ = p.bar.Finish()
}

package loadgen

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/emersion/go-milter"
)

// Report is what one run measured. Latencies are in milliseconds.
type Report struct {
	Label           string    `json:"label,omitempty"` // "no-op" for the in-process ceiling
	Target          string    `json:"target"`
	Started         time.Time `json:"started"`
	ElapsedSeconds  float64   `json:"elapsed_seconds"`
	Concurrency     int       `json:"concurrency"`
	MessagesPerConn int       `json:"messages_per_connection"`

	// Messages is the number of messages that got a verdict; Failed the
	// number that ended in an error (see Errors).
	Messages int64 `json:"messages"`
	Failed   int64 `json:"failed"`
	// Rate is Messages per second of the run.
	Rate float64 `json:"messages_per_second"`
	// TargetRate is the requested rate (0: none); RateMissed counts pacing
	// slots that found no worker free; RateReached says whether the achieved
	// rate came within 5% of the target with no slot missed.
	TargetRate  float64 `json:"target_rate,omitempty"`
	RateMissed  int64   `json:"rate_missed,omitempty"`
	RateReached *bool   `json:"rate_reached,omitempty"`
	// ProcessCPUSeconds is the CPU time (user and system) this process
	// used during the run: the load generator's own cost, plus the server's
	// when it runs in-process (the no-op ceiling). Other jobs on the
	// machine change it far less than they change Rate.
	ProcessCPUSeconds float64 `json:"process_cpu_seconds"`

	Latency []StageLatency `json:"latency"`

	// Verdicts counts messages by final verdict: continue and accept (both
	// let the message through), discard, tempfail, reject, no-recipients
	// (every recipient refused), invalid-reply.
	Verdicts map[string]int64 `json:"verdicts"`
	// VerdictStages counts non-passing verdicts by stage, e.g. "reject@end".
	VerdictStages map[string]int64 `json:"verdict_stages"`
	// Recipients counts RCPT answers: "accepted", or the reply code
	// ("452") or plain action ("tempfail", "reject") of a refusal.
	Recipients map[string]int64 `json:"recipients"`
	// Replies lists the SMTP replies the milter gave, most frequent first.
	Replies []ReplyCount `json:"replies"`
	// Modifications counts end-of-message changes by kind ("add-header").
	Modifications map[string]int64 `json:"modifications"`
	// Errors counts failures by "stage: kind"; ErrorSamples keeps the first
	// error text of each.
	Errors       map[string]int64  `json:"errors"`
	ErrorSamples map[string]string `json:"error_samples,omitempty"`
}

// StageLatency summarises the latencies of one protocol stage.
type StageLatency struct {
	Stage string  `json:"stage"`
	Count uint64  `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

// ReplyCount is one distinct SMTP reply and how often it came, per stage.
type ReplyCount struct {
	Stage string `json:"stage"`
	Reply string `json:"reply"`
	Count int64  `json:"count"`
}

// recorder collects the measurements of a run from all workers.
type recorder struct {
	hist     map[string]*Histogram // fixed keys: read-only after newRecorder
	sessions atomic.Int64

	mu            sync.Mutex
	messages      int64
	failed        int64
	verdicts      map[string]int64
	verdictStages map[string]int64
	recipients    map[string]int64
	replies       map[[2]string]int64
	modifications map[string]int64
	errors        map[string]int64
	errorSamples  map[string]string
}

func newRecorder() *recorder {
	r := &recorder{
		hist:          make(map[string]*Histogram, len(Stages)),
		verdicts:      map[string]int64{},
		verdictStages: map[string]int64{},
		recipients:    map[string]int64{},
		replies:       map[[2]string]int64{},
		modifications: map[string]int64{},
		errors:        map[string]int64{},
		errorSamples:  map[string]string{},
	}
	for _, s := range Stages {
		r.hist[s] = new(Histogram)
	}
	return r
}

func (r *recorder) observe(stage string, d time.Duration) { r.hist[stage].Record(d) }

func (r *recorder) verdict(stage string, v outcome, mods []milter.ModifyAction) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.messages++
	r.verdicts[v.verdict]++
	if v.verdict != verdictContinue && v.verdict != verdictAccept {
		r.verdictStages[v.verdict+"@"+stage]++
	}
	if reply := v.reply(); reply != "" {
		r.replies[[2]string{stage, reply}]++
	}
	for _, m := range mods {
		r.modifications[modificationName(m.Code)]++
	}
}

func (r *recorder) recipient(v outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case v.verdict == verdictContinue:
		r.recipients["accepted"]++
	case v.code != 0:
		r.recipients[fmt.Sprint(v.code)]++
		r.replies[[2]string{StageRcpt, v.reply()}]++
	default:
		r.recipients[v.verdict]++
	}
}

func (r *recorder) fail(stage string, err error) {
	key := stage + ": " + errorKind(err)
	r.mu.Lock()
	defer r.mu.Unlock()
	if stage != "abort" {
		r.failed++ // a failed ABORT comes after the verdict was counted
	}
	r.errors[key]++
	if _, ok := r.errorSamples[key]; !ok {
		r.errorSamples[key] = err.Error()
	}
}

func (r *recorder) report(opts Options, start time.Time, elapsed time.Duration) *Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	rep := &Report{
		Target:          opts.Target.String(),
		Started:         start.UTC(),
		ElapsedSeconds:  elapsed.Seconds(),
		Concurrency:     opts.Concurrency,
		MessagesPerConn: opts.MessagesPerConn,
		Messages:        r.messages,
		Failed:          r.failed,
		TargetRate:      opts.Rate,
		Verdicts:        maps.Clone(r.verdicts),
		VerdictStages:   maps.Clone(r.verdictStages),
		Recipients:      maps.Clone(r.recipients),
		Modifications:   maps.Clone(r.modifications),
		Errors:          maps.Clone(r.errors),
		ErrorSamples:    maps.Clone(r.errorSamples),
	}
	if elapsed > 0 {
		rep.Rate = float64(r.messages) / elapsed.Seconds()
	}
	for _, s := range Stages {
		h := r.hist[s]
		rep.Latency = append(rep.Latency, StageLatency{
			Stage: s, Count: h.Count(), Mean: ms(h.Mean()),
			P50: ms(h.Quantile(0.50)), P90: ms(h.Quantile(0.90)), P99: ms(h.Quantile(0.99)), Max: ms(h.Max()),
		})
	}
	for k, n := range r.replies {
		rep.Replies = append(rep.Replies, ReplyCount{Stage: k[0], Reply: k[1], Count: n})
	}
	slices.SortFunc(rep.Replies, func(a, b ReplyCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Stage, b.Stage), cmp.Compare(a.Reply, b.Reply))
	})
	return rep
}

// finishRate fills in whether the target rate was reached.
func (rep *Report) finishRate() {
	if rep.TargetRate <= 0 {
		return
	}
	reached := rep.RateMissed == 0 && rep.Rate >= 0.95*rep.TargetRate
	rep.RateReached = &reached
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

func modificationName(c milter.ModifyActCode) string {
	switch c {
	case milter.ActAddHeader:
		return "add-header"
	case milter.ActChangeHeader:
		return "change-header"
	case milter.ActInsertHeader:
		return "insert-header"
	case milter.ActAddRcpt:
		return "add-rcpt"
	case milter.ActDelRcpt:
		return "delete-rcpt"
	case milter.ActReplBody:
		return "replace-body"
	case milter.ActChangeFrom:
		return "change-from"
	case milter.ActQuarantine:
		return "quarantine"
	default:
		return fmt.Sprintf("code-%q", rune(c))
	}
}

// WriteText writes the report as aligned tables for a terminal.
func (rep *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format, args...) }
	label := rep.Label
	if label == "" {
		label = "target"
	}
	fmt.Fprintf(w, "%s %s: %d messages in %.2fs = %.1f messages/s (concurrency %d, %d messages per connection)\n",
		label, rep.Target, rep.Messages, rep.ElapsedSeconds, rep.Rate, rep.Concurrency, rep.MessagesPerConn)
	if rep.Failed > 0 {
		fmt.Fprintf(w, "failed: %d messages\n", rep.Failed)
	}
	if rep.Messages > 0 {
		fmt.Fprintf(w, "CPU time of this process: %.2fs, %.3f ms per message\n",
			rep.ProcessCPUSeconds, rep.ProcessCPUSeconds*1000/float64(rep.Messages))
	}
	if rep.TargetRate > 0 {
		state := "reached"
		if rep.RateReached != nil && !*rep.RateReached {
			state = "NOT REACHED"
		}
		fmt.Fprintf(w, "target rate %.1f messages/s: %s (%d pacing slots missed)\n", rep.TargetRate, state, rep.RateMissed)
	}
	header := false
	for _, l := range rep.Latency {
		if l.Count == 0 {
			continue
		}
		if !header {
			fmt.Fprintln(w)
			p("stage\tcount\tmean ms\tp50 ms\tp90 ms\tp99 ms\tmax ms\t\n")
			header = true
		}
		p("%s\t%d\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t\n", l.Stage, l.Count, l.Mean, l.P50, l.P90, l.P99, l.Max)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	sections := []struct {
		title  string
		counts map[string]int64
	}{
		{"verdicts", rep.Verdicts},
		{"refusals by stage", rep.VerdictStages},
		{"recipients", rep.Recipients},
		{"modifications", rep.Modifications},
		{"errors", rep.Errors},
	}
	for _, s := range sections {
		if len(s.counts) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s:\n", s.title)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, k := range sortedByCount(s.counts) {
			fmt.Fprintf(tw, "  %s\t%d\t%s\n", k, s.counts[k], percent(s.counts[k], total(s.counts)))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(rep.Replies) > 0 {
		fmt.Fprintf(w, "\nreplies (most frequent first):\n")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for i, r := range rep.Replies {
			if i == 20 {
				fmt.Fprintf(tw, "  ...\t%d more\t\n", len(rep.Replies)-i)
				break
			}
			fmt.Fprintf(tw, "  %d\t%s\t%s\n", r.Count, r.Stage, r.Reply)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(rep.ErrorSamples) > 0 {
		fmt.Fprintf(w, "\nfirst error of each kind:\n")
		for _, k := range slices.Sorted(maps.Keys(rep.ErrorSamples)) {
			fmt.Fprintf(w, "  %s: %s\n", k, rep.ErrorSamples[k])
		}
	}
	return nil
}

func sortedByCount(m map[string]int64) []string {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int { return cmp.Or(cmp.Compare(m[b], m[a]), strings.Compare(a, b)) })
	return keys
}

func total(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

func percent(n, of int64) string {
	if of == 0 {
		return ""
	}
	return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(of))
}

// Summary is the outcome of one invocation: one run, or a no-op ceiling run
// and a run against the target with the same load.
type Summary struct {
	Runs []*Report `json:"runs"`
	// RatioToNoOp is the target's rate divided by the no-op ceiling's, when
	// both were measured.
	RatioToNoOp float64 `json:"ratio_to_noop,omitempty"`
}

// NewSummary builds a summary from noop (may be nil) and target (may be nil)
// and computes the ratio when both are there.
func NewSummary(noop, target *Report) *Summary {
	s := &Summary{}
	for _, r := range []*Report{noop, target} {
		if r != nil {
			s.Runs = append(s.Runs, r)
		}
	}
	if noop != nil && target != nil && noop.Rate > 0 {
		s.RatioToNoOp = target.Rate / noop.Rate
	}
	return s
}

// Failed returns the number of messages of all runs that ended in an error.
func (s *Summary) Failed() int64 {
	var n int64
	for _, r := range s.Runs {
		n += r.Failed
	}
	return n
}

// WriteText writes every run's report and the ratio.
func (s *Summary) WriteText(w io.Writer) error {
	for i, r := range s.Runs {
		if i > 0 {
			fmt.Fprintln(w)
		}
		if err := r.WriteText(w); err != nil {
			return err
		}
	}
	if s.RatioToNoOp > 0 {
		_, err := fmt.Fprintf(w, "\nratio to the no-op ceiling: %.3f (%.1f / %.1f messages/s)\n",
			s.RatioToNoOp, s.Runs[1].Rate, s.Runs[0].Rate)
		return err
	}
	return nil
}

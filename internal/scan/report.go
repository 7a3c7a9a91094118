package scan

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/abusemilter/abusemilter/internal/mailbox"
	"github.com/abusemilter/abusemilter/scoring"
)

// maxSenders bounds the sender table of the summary so that memory does
// not grow with the mailbox: past it, new senders count as "(other)".
const maxSenders = 50000

// maxListedProblems bounds the unreadable inputs listed in the summary.
const maxListedProblems = 1000

// summary accumulates the counts reported at the end.
type summary struct {
	Messages, Accepted, Deferred, Rejected int
	Held                                   int // held for review (counted apart from accepted)
	Rules                                  map[string]int
	Senders                                map[string]*senderCount
	ProblemKinds                           map[mailbox.ProblemKind]int
	Problems                               []*mailbox.Problem // listed, at most maxListedProblems
	Locks                                  []lockEvent        // --replay-rates
}

type senderCount struct {
	Messages, Refused int
}

func newSummary() *summary {
	return &summary{Rules: make(map[string]int), Senders: make(map[string]*senderCount), ProblemKinds: make(map[mailbox.ProblemKind]int)}
}

// add counts one scanned message.
func (s *summary) add(r *record) {
	s.Messages++
	switch r.Verdict.Action {
	case scoring.Reject:
		s.Rejected++
	case scoring.Defer:
		s.Deferred++
	case scoring.Hold:
		s.Held++
	default:
		s.Accepted++
	}
	for _, id := range ruleIDs(r) {
		s.Rules[id]++
	}
	from := r.From
	if from == "" {
		from = "(none)"
	}
	sc := s.Senders[from]
	if sc == nil {
		if len(s.Senders) >= maxSenders {
			from = "(other)"
			sc = s.Senders[from]
		}
		if sc == nil {
			sc = &senderCount{}
			s.Senders[from] = sc
		}
	}
	sc.Messages++
	if r.Verdict.Action != scoring.Accept {
		sc.Refused++
	}
}

// problem counts one unreadable input or warning.
func (s *summary) problem(p *mailbox.Problem) {
	s.ProblemKinds[p.Kind]++
	if len(s.Problems) < maxListedProblems {
		s.Problems = append(s.Problems, p)
	}
}

// unreadable is the number of inputs (or mbox messages) skipped; truncated
// messages were still scanned.
func (s *summary) unreadable() int {
	n := 0
	for k, c := range s.ProblemKinds {
		if k != mailbox.Truncated {
			n += c
		}
	}
	return n
}

// atOrAbove counts messages whose verdict is at least as severe as a.
func (s *summary) atOrAbove(a scoring.Action) int {
	if a == scoring.Defer {
		return s.Deferred + s.Rejected
	}
	return s.Rejected
}

type ruleCount struct {
	Rule  string `json:"rule"`
	Count int    `json:"count"`
}

// topRules returns the n most frequent rules, ties by ID.
func (s *summary) topRules(n int) []ruleCount {
	out := make([]ruleCount, 0, len(s.Rules))
	for id, c := range s.Rules {
		out = append(out, ruleCount{id, c})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Rule < out[j].Rule
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}

type senderRow struct {
	From     string `json:"from"`
	Messages int    `json:"messages"`
	Refused  int    `json:"refused"`
}

// topSenders returns the n senders with most refused messages, then most
// messages.
func (s *summary) topSenders(n int) []senderRow {
	out := make([]senderRow, 0, len(s.Senders))
	for from, c := range s.Senders {
		out = append(out, senderRow{from, c.Messages, c.Refused})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Refused != b.Refused {
			return a.Refused > b.Refused
		}
		if a.Messages != b.Messages {
			return a.Messages > b.Messages
		}
		return a.From < b.From
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// ruleIDs lists the rules of a record: every finding, then the deciding
// rule when it is not a finding (rate limits, unknown account, lock).
func ruleIDs(r *record) []string {
	ids := r.Verdict.RuleIDs()
	if r.Verdict.Rule != "" && !slices.Contains(ids, r.Verdict.Rule) {
		ids = append(ids, r.Verdict.Rule)
	}
	return ids
}

// reporter writes messages and the summary in one format.
type reporter interface {
	message(r *record) error
	summary(s *summary) error
}

// newReporter returns the reporter of a format New accepted ("": text).
func newReporter(format string, stdout, stderr io.Writer) reporter {
	switch format {
	case "json":
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false)
		return &jsonReporter{enc: enc}
	case "csv":
		return &csvReporter{w: csv.NewWriter(stdout), stderr: stderr}
	}
	return &textReporter{w: stdout}
}

func formatDate(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// textReporter writes one line per non-accepted message and a readable
// summary.
type textReporter struct {
	w io.Writer
}

func (t *textReporter) message(r *record) error {
	if r.Verdict.Action == scoring.Accept {
		return nil
	}
	rcpts := r.Recipients
	more := ""
	if len(rcpts) > 3 {
		more = fmt.Sprintf(",(+%d)", len(rcpts)-3)
		rcpts = rcpts[:3]
	}
	verdict := r.Verdict.Action.String()
	if r.Verdict.Monitor {
		verdict += "(monitor)"
	}
	_, err := fmt.Fprintf(t.w, "%s  %s  %s  %s  %s  %s\n", r.where(), orDash(formatDate(r.Date)), orDash(r.From),
		orDash(strings.Join(rcpts, ",")+more), verdict, orDash(strings.Join(ruleIDs(r), ",")))
	return err
}

func (t *textReporter) summary(s *summary) error {
	var b strings.Builder
	held := ""
	if s.Held > 0 {
		held = fmt.Sprintf(", %d held", s.Held)
	}
	fmt.Fprintf(&b, "\nscanned %d messages: %d accepted%s, %d deferred, %d rejected\n", s.Messages, s.Accepted, held, s.Deferred, s.Rejected)
	if rules := s.topRules(10); len(rules) > 0 {
		b.WriteString("top rules:\n")
		for _, r := range rules {
			fmt.Fprintf(&b, "  %-28s %d\n", r.Rule, r.Count)
		}
	}
	if senders := s.topSenders(10); len(senders) > 0 {
		b.WriteString("top senders (messages, refused):\n")
		for _, r := range senders {
			fmt.Fprintf(&b, "  %-40s %d %d\n", r.From, r.Messages, r.Refused)
		}
	}
	for _, l := range s.Locks {
		fmt.Fprintf(&b, "replay: account %q would have been locked at %s (%s)\n", l.Account, formatDate(l.At), l.Where)
	}
	fmt.Fprintf(&b, "unreadable inputs: %d\n", s.unreadable())
	if n := s.ProblemKinds[mailbox.Truncated]; n > 0 {
		fmt.Fprintf(&b, "truncated messages (scanned as far as they go): %d\n", n)
	}
	for _, p := range s.Problems {
		fmt.Fprintf(&b, "  %v\n", p)
	}
	_, err := io.WriteString(t.w, b.String())
	return err
}

// jsonMessage is one line of --format json; docs/abusescan.md documents it.
type jsonMessage struct {
	File         string          `json:"file"`
	Offset       int64           `json:"offset"`
	Format       mailbox.Format  `json:"format"`
	Date         string          `json:"date"`
	From         string          `json:"from"`
	Recipients   []string        `json:"recipients"`
	EnvelopeFrom string          `json:"envelope_from"`
	MessageID    string          `json:"message_id"`
	Account      string          `json:"account"`
	Size         int64           `json:"size"`
	Truncated    bool            `json:"truncated"`
	Verdict      string          `json:"verdict"`
	Monitor      bool            `json:"monitor"`
	Rule         string          `json:"rule"`
	Rules        []string        `json:"rules"`
	Score        float64         `json:"score"`
	Reply        string          `json:"reply"`
	Findings     []jsonFinding   `json:"findings"`
	Replay       *jsonReplayInfo `json:"replay,omitempty"`
}

type jsonFinding struct {
	Rule   string         `json:"rule"`
	Clause scoring.Clause `json:"clause"`
	Score  float64        `json:"score"`
	Reason string         `json:"reason"`
}

type jsonReplayInfo struct {
	Verdict    string `json:"verdict"`
	Rule       string `json:"rule"`
	RetryAfter int64  `json:"retry_after_seconds"`
	Locked     bool   `json:"locked"`
	Skipped    string `json:"skipped,omitempty"`
}

type jsonSummary struct {
	Summary    bool                        `json:"summary"`
	Messages   int                         `json:"messages"`
	Accepted   int                         `json:"accepted"`
	Deferred   int                         `json:"deferred"`
	Rejected   int                         `json:"rejected"`
	Held       int                         `json:"held,omitempty"`
	TopRules   []ruleCount                 `json:"top_rules"`
	TopSenders []senderRow                 `json:"top_senders"`
	Unreadable int                         `json:"unreadable"`
	Problems   map[mailbox.ProblemKind]int `json:"problems"`
	Listed     []jsonProblem               `json:"problem_list"`
	Locks      []jsonLock                  `json:"locks,omitempty"`
}

type jsonProblem struct {
	File   string              `json:"file"`
	Offset int64               `json:"offset"`
	Kind   mailbox.ProblemKind `json:"kind"`
	Error  string              `json:"error"`
}

type jsonLock struct {
	Account string `json:"account"`
	At      string `json:"at"`
	Where   string `json:"where"`
}

type jsonReporter struct {
	enc *json.Encoder
}

func toJSON(r *record) jsonMessage {
	v := r.Verdict
	m := jsonMessage{
		File: r.Source, Offset: r.Offset, Format: r.Format, Date: formatDate(r.Date), From: r.From,
		Recipients: r.Recipients, EnvelopeFrom: r.EnvelopeFrom, MessageID: r.MessageID, Account: r.Account,
		Size: r.Size, Truncated: r.Truncated, Verdict: v.Action.String(), Monitor: v.Monitor, Rule: v.Rule,
		Rules: ruleIDs(r), Score: v.Score, Findings: []jsonFinding{},
	}
	if m.Recipients == nil {
		m.Recipients = []string{}
	}
	if v.Action != scoring.Accept {
		m.Reply = v.Reply()
	}
	for _, f := range v.Findings {
		m.Findings = append(m.Findings, jsonFinding{f.Rule, f.Clause, f.Score, f.Reason})
	}
	if r.Replay != nil {
		m.Replay = &jsonReplayInfo{Verdict: r.Replay.Action.String(), Rule: r.Replay.Rule,
			RetryAfter: int64(r.Replay.RetryAfter / time.Second), Locked: r.Replay.Locked, Skipped: r.Replay.Skipped}
	}
	return m
}

func (j *jsonReporter) message(r *record) error { return j.enc.Encode(toJSON(r)) }

func (j *jsonReporter) summary(s *summary) error {
	out := jsonSummary{
		Summary: true, Messages: s.Messages, Accepted: s.Accepted, Deferred: s.Deferred, Rejected: s.Rejected, Held: s.Held,
		TopRules: s.topRules(10), TopSenders: s.topSenders(10), Unreadable: s.unreadable(),
		Problems: s.ProblemKinds, Listed: []jsonProblem{},
	}
	for _, p := range s.Problems {
		e := ""
		if p.Err != nil {
			e = p.Err.Error()
		}
		out.Listed = append(out.Listed, jsonProblem{p.Source, p.Offset, p.Kind, e})
	}
	for _, l := range s.Locks {
		out.Locks = append(out.Locks, jsonLock{l.Account, formatDate(l.At), l.Where})
	}
	return j.enc.Encode(out)
}

// csvHeader names the columns of --format csv.
var csvHeader = []string{"file", "offset", "format", "date", "from", "recipients", "envelope_from", "message_id",
	"account", "size", "verdict", "rule", "rules", "score", "reply", "replay_verdict", "replay_rule"}

// csvReporter writes one row per message; the summary goes to stderr as
// text, so that stdout stays one table.
type csvReporter struct {
	w       *csv.Writer
	stderr  io.Writer
	started bool
}

func (c *csvReporter) message(r *record) error {
	if !c.started {
		c.started = true
		if err := c.w.Write(csvHeader); err != nil {
			return err
		}
	}
	v := r.Verdict
	reply := ""
	if v.Action != scoring.Accept {
		reply = v.Reply()
	}
	var rv, rr string
	if r.Replay != nil {
		rv, rr = r.Replay.Action.String(), r.Replay.Rule
		if r.Replay.Skipped != "" {
			rv = "skipped"
		}
	}
	row := []string{r.Source, strconv.FormatInt(r.Offset, 10), string(r.Format), formatDate(r.Date), r.From,
		strings.Join(r.Recipients, " "), r.EnvelopeFrom, r.MessageID, r.Account, strconv.FormatInt(r.Size, 10),
		v.Action.String(), v.Rule, strings.Join(ruleIDs(r), " "), strconv.FormatFloat(v.Score, 'f', -1, 64), reply, rv, rr}
	return c.w.Write(row)
}

func (c *csvReporter) summary(s *summary) error {
	if !c.started {
		c.started = true
		if err := c.w.Write(csvHeader); err != nil {
			return err
		}
	}
	c.w.Flush()
	if err := c.w.Error(); err != nil {
		return err
	}
	return (&textReporter{w: c.stderr}).summary(s)
}

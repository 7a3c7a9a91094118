package scan

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/abusemilter/abusemilter/identity"
	"github.com/abusemilter/abusemilter/internal/mailbox"
	"github.com/abusemilter/abusemilter/scoring"
)

var noAddr netip.Addr

// record is what the report needs of one message (or unreadable input): no
// body, so that records can be kept for a rate replay.
type record struct {
	Seq          int
	Source       string
	Offset       int64
	Format       mailbox.Format
	Date         time.Time // from the Date header; zero when missing or unreadable
	From         string    // first From address, lowercase
	Recipients   []string
	EnvelopeFrom string
	MessageID    string
	Account      string
	Size         int64
	Truncated    bool
	// Rules is the engine's verdict; Verdict is the final one (the rules'
	// verdict, or the replayed limiter's when --replay-rates changed it).
	Rules   scoring.Verdict
	Verdict scoring.Verdict
	Replay  *replayResult
	Problem *mailbox.Problem // set for an input that could not be read
	// env and id are what the replay charges the message with.
	env *scoring.Envelope
	id  scoring.Identity
}

// isMessage reports whether the record is a scanned message (not a problem).
func (r *record) isMessage() bool { return r.Problem == nil }

// where names the record for reports: "file" or "file:offset" in an mbox.
func (r *record) where() string {
	if r.Format == mailbox.Mbox || (r.Problem != nil && r.Problem.InMbox) {
		return fmt.Sprintf("%s:%d", r.Source, r.Offset)
	}
	return r.Source
}

// job is one walk entry travelling through the worker pool; done receives
// its record, and the collector reads jobs in input order.
type job struct {
	seq   int
	entry mailbox.Entry
	done  chan *record
}

// execute walks the inputs, evaluates messages on s.opts.Jobs workers and
// hands records to emit in input order. With --replay-rates records are
// collected, replayed in Date order, then emitted in input order.
func (s *Scan) execute(ctx context.Context, prog *progress, emit func(*record) error, sum *summary) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := s.opts.Jobs
	work := make(chan *job, jobs*4)
	order := make(chan *job, jobs*16+64)

	go func() {
		defer close(order)
		defer close(work)
		seq := 0
		walkOpts := mailbox.Options{BodyCap: s.bodyCap, Variant: s.variant, NewSink: s.newSink}
		if prog != nil {
			walkOpts.OnRead = prog.read
		}
		for e := range mailbox.Walk(ctx, s.opts.Inputs, s.opts.Stdin, walkOpts) {
			j := &job{seq: seq, entry: e, done: make(chan *record, 1)}
			seq++
			if e.Problem != nil {
				j.done <- problemRecord(j.seq, e.Problem)
			}
			select {
			case order <- j:
			case <-ctx.Done():
				closeSink(e.Message)
				return
			}
			if e.Message != nil {
				select {
				case work <- j:
				case <-ctx.Done():
					closeSink(e.Message)
					return
				}
			}
		}
	}()

	var wg sync.WaitGroup
	for range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := s.newWorker()
			for j := range work {
				j.done <- w.process(ctx, j.seq, j.entry.Message)
			}
		}()
	}
	defer wg.Wait()

	var sp *spool
	if s.opts.ReplayRates {
		var err error
		if sp, err = newSpool(); err != nil {
			cancel()
			return err
		}
		defer sp.close()
	}
	for j := range order {
		var r *record
		select {
		case r = <-j.done:
		case <-ctx.Done():
			return nil
		}
		if r.Problem != nil {
			// Unreadable input, or a warning about the message that follows.
			if s.opts.Warn != nil {
				s.opts.Warn(r.Problem)
			}
			sum.problem(r.Problem)
			continue
		}
		prog.message()
		if sp != nil {
			// Kept on disk, not in memory, until the replay (spool).
			if err := sp.add(r); err != nil {
				cancel()
				return err
			}
			continue
		}
		if err := emit(r); err != nil {
			cancel()
			return fmt.Errorf("writing report: %w", err)
		}
	}
	if sp == nil || ctx.Err() != nil {
		return nil
	}
	if err := sp.finish(); err != nil {
		return err
	}
	locks, err := s.replay(ctx, sp)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	sum.Locks = locks
	err = sp.inOrder(func(r *record) error {
		if err := emit(r); err != nil {
			return fmt.Errorf("writing report: %w", err)
		}
		return ctx.Err()
	})
	if ctx.Err() != nil {
		return nil // Run reports the interruption
	}
	return err
}

func problemRecord(seq int, p *mailbox.Problem) *record {
	return &record{Seq: seq, Source: p.Source, Offset: p.Offset, Problem: p}
}

// worker evaluates messages on one goroutine with the scan's shared engine
// (which is safe for concurrent use); it caches the accounts
// --account-from-sender makes up.
type worker struct {
	s     *Scan
	adhoc map[string]*identity.Account // --account-from-sender accounts by sender headers
}

func (s *Scan) newWorker() *worker {
	return &worker{s: s, adhoc: make(map[string]*identity.Account)}
}

// process evaluates one message.
func (w *worker) process(ctx context.Context, seq int, m *mailbox.Message) *record {
	s := w.s
	r := &record{Seq: seq, Source: m.Source, Offset: m.Offset, Format: m.Format, Size: m.Size(), Truncated: m.Truncated}
	msg, err := scoring.ParseBytes(m.Data, s.bodyCap) // m.Data is ours: no copy
	if err != nil {
		closeSink(m)
		r.Problem = &mailbox.Problem{Source: m.Source, Offset: m.Offset, InMbox: m.Format == mailbox.Mbox, Kind: mailbox.NoHeaders, Err: err}
		return r
	}
	msg.BodySize += m.Skipped
	if ms, ok := m.Sink.(*scoring.MalwareStream); ok {
		msg.Malware = ms.Finish(ctx)
	}
	msg.BodyTruncated = msg.BodyTruncated || m.Skipped > 0

	// The envelope, and the message's own time: as the corpus quality test
	// sees received mail (scoring.AsReceivedAt), or as a sent message.
	var env *scoring.Envelope
	var received *identity.Account // the account AsReceived makes up
	var sent time.Time
	if s.opts.AsReceived {
		rs := scoring.AsReceivedAt(msg, "", time.Time{}, s.cfg.Rules.OwnMTAs)
		env, received, sent = rs.Env, rs.Account, rs.Now
	} else {
		env = &scoring.Envelope{MailFrom: envelopeSender(msg, m.EnvelopeFrom), Rcpts: recipients(msg)}
		// No address to take: unknown, never the null sender of a bounce.
		env.SenderUnknown = env.MailFrom == ""
	}
	r.EnvelopeFrom, r.Recipients = env.MailFrom, env.Rcpts
	r.From = firstAddress(msg.Get("From"))
	r.Date = parseDate(msg.Get("Date"))
	r.MessageID = strings.TrimSpace(msg.Get("Message-Id"))
	switch s.clock {
	case clockFixed:
		env.Time = s.fixedNow
	case clockReceived:
		if !s.opts.AsReceived {
			sent = r.Date
			if t, ok := scoring.ReceivedTime(msg.Headers); ok {
				sent = t
			}
		}
		env.Time = sent // zero (no time in the message): the current time
	}

	id := w.identify(env, msg, r.From, received)
	r.Rules = s.engine.CheckMessage(ctx, env, msg, id)
	r.Verdict = r.Rules
	if id.Account == nil {
		id = s.engine.Identify(env)
	}
	r.env, r.id, r.Account = env, id, id.Name()
	return r
}

// parseDate reads a Date header value; the zero time when it is missing
// or unreadable.
func parseDate(v string) time.Time {
	if v == "" {
		return time.Time{}
	}
	t, err := scoring.ParseDate(v)
	if err != nil {
		return time.Time{}
	}
	return t.UTC()
}

// identify picks the account a message is scanned as. received is the
// account scoring.AsReceived made up for the message (--as-received), which
// --account-from-sender uses when no configured account owns the domain.
func (w *worker) identify(env *scoring.Envelope, msg *scoring.Message, from string, received *identity.Account) scoring.Identity {
	s := w.s
	switch {
	case s.fixed != nil:
		env.AuthLogin = s.opts.Account
		return scoring.Identity{Account: s.fixed, How: s.fixedHow}
	case s.opts.AccountFromSender:
		_, domain := identity.SplitAddress(from)
		if domain == "" {
			_, domain = identity.SplitAddress(identity.NormalizeAddress(env.MailFrom))
		}
		for _, a := range s.accounts {
			if domain != "" && !a.AnySender && a.OwnsDomain(domain) {
				env.AuthLogin = a.Name
				return scoring.Identity{Account: a, How: identity.ByLogin}
			}
		}
		a := received
		if a != nil {
			a.Name, a.AdHoc = adhocName(domain), true
		} else {
			a = w.adhocAccount(domain, env, msg)
		}
		env.AuthLogin = a.Name
		return scoring.Identity{Account: a, How: identity.ByLogin}
	}
	sender := env.MailFrom
	if sender == "" {
		sender = from
	}
	for _, a := range s.accounts {
		if !a.AnySender && a.MaySendAs(sender) {
			env.AuthLogin = a.Name
			return scoring.Identity{Account: a, How: identity.ByLogin}
		}
	}
	// No account covers the sender: let the engine decide, as if the
	// sender had logged in with its address.
	env.AuthLogin = identity.NormalizeAddress(sender)
	return scoring.Identity{}
}

// adhocAccount makes the account of --account-from-sender for a domain no
// configured account owns: it may send as every domain the message itself
// names as its author or sender, so that only content rules judge.
func (w *worker) adhocAccount(domain string, env *scoring.Envelope, msg *scoring.Message) *identity.Account {
	name := adhocName(domain)
	// The raw header values are the cache key: parsing them costs more
	// than the lookup, and senders repeat.
	var key strings.Builder
	key.WriteString(domain + "\x00" + env.MailFrom)
	for _, h := range adhocHeaders {
		for _, v := range msg.Values(h) {
			key.WriteString("\x00" + h + ":" + v)
		}
	}
	if a := w.adhoc[key.String()]; a != nil {
		return a
	}
	domains := []string{domain}
	_, d := identity.SplitAddress(identity.NormalizeAddress(env.MailFrom))
	domains = append(domains, d)
	for _, h := range adhocHeaders {
		for _, v := range msg.Values(h) {
			// Parsed as the rules parse them, so that what they check is owned.
			for _, a := range scoring.HeaderAddresses(v) {
				_, d := identity.SplitAddress(identity.CanonicalAddress(a.Address))
				domains = append(domains, d)
			}
		}
	}
	a := &identity.Account{Name: name, AdHoc: true}
	for _, d := range domains {
		if d != "" && a.AddSendAs(d) != nil {
			// A domain the account syntax refuses: allow any sender rather
			// than make the identity rule fire on a parse quirk.
			a.AnySender = true
		}
	}
	if len(w.adhoc) > 10000 {
		clear(w.adhoc)
	}
	w.adhoc[key.String()] = a
	return a
}

// adhocName names the made-up account of a sender domain.
func adhocName(domain string) string {
	if domain == "" {
		return "sender:unknown"
	}
	return "sender:" + domain
}

// adhocHeaders name the authors and senders an ad-hoc account may use.
var adhocHeaders = []string{"From", "Sender", "Resent-From", "Resent-Sender"}

// envelopeSender is the envelope sender the message was sent with: the
// first Return-Path that is an address (a null "<>" is passed over), else
// the mbox From_ line's address, else the From address; "" when there is
// none of these (the caller marks it unknown).
func envelopeSender(msg *scoring.Message, fromLine string) string {
	if rp := scoring.ReturnPath(msg); rp != "" {
		return rp
	}
	if fromLine != "" && identity.IsAddress(fromLine) {
		return fromLine
	}
	return firstAddress(msg.Get("From"))
}

// firstAddress returns the first address of an address-list header,
// lowercase, parsed as the rules parse it (scoring.HeaderAddresses).
func firstAddress(v string) string {
	if v == "" {
		return ""
	}
	addrs := scoring.HeaderAddresses(v)
	if len(addrs) == 0 {
		return ""
	}
	return strings.ToLower(addrs[0].Address)
}

// recipients lists the addresses of To, Cc and Bcc, each once, as the
// envelope recipients of a submission would be.
func recipients(msg *scoring.Message) []string {
	var out []string
	seen := make(map[string]bool)
	for _, name := range []string{"To", "Cc", "Bcc"} {
		for _, v := range msg.Values(name) {
			addrs, err := scoring.ParseAddressList(v)
			if err != nil {
				continue
			}
			for _, a := range addrs {
				addr := strings.ToLower(a.Address)
				if !seen[addr] {
					seen[addr] = true
					out = append(out, addr)
				}
			}
		}
	}
	return out
}

package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/abusemilter/abusemilter/ratelimit"
)

// nearShare is the share of a limit above which an account is "close to
// its limit" on the overview (80%).
const nearShare = 0.8

// overviewCache is how long one computation of the overview serves every
// browser, so that many open consoles cost the store one read.
const overviewCache = 2 * time.Second

// deskPart is one part of a page that comes from the Desk: its error (or
// ErrUnavailable) is shown in its place.
type deskPart struct {
	Unavailable bool
	Error       string
}

func partOf(err error) deskPart {
	switch {
	case err == nil:
		return deskPart{}
	case errors.Is(err, ErrUnavailable):
		return deskPart{Unavailable: true}
	}
	return deskPart{Error: "the store did not answer"}
}

// nearLimit is an account close to (or at) one of its limits.
type nearLimit struct {
	Account string
	Limit   limitRow
}

type overviewData struct {
	At         time.Time
	Locked     []ratelimit.LockedAccount
	Near       []nearLimit
	Held       []HeldMessage
	HeldPart   deskPart
	Compl      []Complaint
	ComplPart  deskPart
	Refusals   int
	RefPart    deskPart
	RefChart   chart
	StoreError string
}

type overviewView struct {
	frame
	overviewData
	Refresh int // seconds; 0: off
}

func (s *Server) overview(ctx context.Context) *overviewData {
	s.overviewMu.Lock()
	defer s.overviewMu.Unlock()
	now := s.o.Now()
	if s.overviewData != nil && now.Sub(s.overviewAt) < overviewCache && !now.Before(s.overviewAt) {
		return s.overviewData
	}
	d := &overviewData{At: now}
	locked, err := s.o.Admin.Locked(ctx)
	if err != nil {
		d.StoreError = "the store did not answer"
		s.logStoreError("overview", err)
	}
	d.Locked = locked
	d.Near = s.nearLimits(ctx)
	held, err := s.desk.Held(ctx, HeldFilter{Limit: 10})
	d.Held, d.HeldPart = held, partOf(err)
	since := now.Add(-24 * time.Hour)
	compl, err := s.desk.Complaints(ctx, ComplaintFilter{Attributed: true, Since: since, Limit: 200})
	if err == nil {
		var un []Complaint
		un, err = s.desk.Complaints(ctx, ComplaintFilter{Attributed: false, Since: since, Limit: 200})
		compl = append(compl, un...)
		sort.Slice(compl, func(i, j int) bool { return compl[i].At.After(compl[j].At) })
	}
	d.Compl, d.ComplPart = compl, partOf(err)
	refs, err := s.desk.Refusals(ctx, RefusalFilter{Since: since, Limit: 10000})
	d.Refusals, d.RefPart = len(refs), partOf(err)
	if err == nil {
		d.RefChart = refusalChart(refs, now)
	}
	s.overviewData, s.overviewAt = d, now
	return d
}

// nearLimits finds the accounts above nearShare of a limit: the busiest
// accounts of each configured account window (Top), then the status of
// each.
func (s *Server) nearLimits(ctx context.Context) []nearLimit {
	windows := map[time.Duration]bool{}
	for _, d := range subjectDimensions(ratelimit.KindAccount) {
		for _, r := range s.o.Policy.Limits[d] {
			windows[r.Window] = true
		}
	}
	candidates := map[string]bool{}
	for w := range windows {
		for _, by := range []ratelimit.TopBy{ratelimit.TopMessages, ratelimit.TopRecipients} {
			top, err := s.o.Admin.Top(ctx, by, w, 20)
			if err != nil {
				s.logStoreError("top", err)
				continue
			}
			for _, t := range top {
				if t.Subject.Kind == ratelimit.KindAccount && len(candidates) < 60 {
					candidates[t.Subject.Name] = true
				}
			}
		}
	}
	var out []nearLimit
	for a := range candidates {
		st, err := s.o.Admin.Status(ctx, ratelimit.Account(a))
		if err != nil {
			s.logStoreError("status", err)
			continue
		}
		best := limitRow{}
		for _, l := range st.Limits {
			row := newLimitRow(l)
			if row.Share >= nearShare && row.Share > best.Share {
				best = row
			}
		}
		if best.Max > 0 {
			out = append(out, nearLimit{Account: a, Limit: best})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Limit.Share != out[j].Limit.Share {
			return out[i].Limit.Share > out[j].Limit.Share
		}
		return out[i].Account < out[j].Account
	})
	return out
}

func (s *Server) overviewPage(w http.ResponseWriter, r *http.Request) {
	v := overviewView{overviewData: *s.overview(r.Context()), Refresh: int(s.o.Refresh / time.Second)}
	v.frame = s.frameFor(r, sessionOf(r), "overview", "Overview")
	s.render(w, r, "overview", v)
}

// overviewLive is the overview's body alone, fetched by the page's script
// to refresh itself.
func (s *Server) overviewLive(w http.ResponseWriter, r *http.Request) {
	v := overviewView{overviewData: *s.overview(r.Context()), Refresh: int(s.o.Refresh / time.Second)}
	v.frame = frame{User: sessionOf(r).user}
	s.render(w, r, "live", v)
}

// searchResult is one subject that matches a search.
type searchResult struct {
	Subject string // acct:NAME, sender:ADDR, client:IP
	Label   string
	Why     string
	Locked  bool
}

type searchView struct {
	frame
	Query   string
	Error   string
	Results []searchResult
}

func (s *Server) searchPage(w http.ResponseWriter, r *http.Request) {
	v := searchView{}
	v.frame = s.frameFor(r, sessionOf(r), "search", "Search")
	q, err := plainText("the search term", r.URL.Query().Get("q"), maxSearch)
	if err != nil {
		v.Error = err.Error()
		s.renderStatus(w, r, http.StatusBadRequest, "search", v)
		return
	}
	v.Query = q
	if q != "" {
		v.Results, err = s.search(r.Context(), q)
		if err != nil {
			s.storeFailed(w, r, err)
			return
		}
	}
	s.render(w, r, "search", v)
}

// search finds accounts by name, login or address (the config's
// directory, the locked accounts, the exemptions), and offers the term
// itself as a subject.
func (s *Server) search(ctx context.Context, q string) ([]searchResult, error) {
	lq := strings.ToLower(q)
	found := map[string]*searchResult{}
	var order []string
	add := func(subj ratelimit.Subject, why string) {
		key := subj.String()
		if r, ok := found[key]; ok {
			if !strings.Contains(r.Why, why) {
				r.Why += "; " + why
			}
			return
		}
		found[key] = &searchResult{Subject: key, Label: subj.Name, Why: why}
		order = append(order, key)
	}
	names := make([]string, 0, len(s.o.Directory))
	for n := range s.o.Directory {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		e := s.o.Directory[n]
		if strings.Contains(strings.ToLower(n), lq) {
			add(ratelimit.Account(n), "account name")
		}
		for _, l := range e.Logins {
			if strings.Contains(strings.ToLower(l), lq) {
				add(ratelimit.Account(n), "login "+l)
			}
		}
		for _, a := range e.SendAs {
			la := strings.ToLower(a)
			if strings.Contains(la, lq) || strings.Contains(lq, "@") && strings.HasSuffix(lq, "@"+la) {
				add(ratelimit.Account(n), "sends as "+a)
			}
		}
	}
	locked, err := s.o.Admin.Locked(ctx)
	if err != nil {
		return nil, err
	}
	lockedSet := map[string]bool{}
	for _, l := range locked {
		lockedSet[l.Account] = true
		if strings.Contains(strings.ToLower(l.Account), lq) {
			add(ratelimit.Account(l.Account), "locked")
		}
	}
	ex, err := s.o.Admin.Exemptions(ctx)
	if err != nil {
		return nil, err
	}
	for _, e := range ex {
		if strings.Contains(strings.ToLower(e.Subject.Name), lq) {
			add(e.Subject, "exempt")
		}
	}
	// The term itself, as abusectl reads a subject: an address is a
	// sender, an IP address a client, anything else an account.
	if subj, err := parseSubjectInput(q); err == nil {
		if _, ok := found[subj.String()]; !ok {
			why := "as typed"
			if _, err := netip.ParseAddr(q); err == nil {
				why = "client address as typed"
			}
			add(subj, why)
		}
	}
	out := make([]searchResult, 0, len(order))
	for _, k := range order {
		r := *found[k]
		r.Locked = strings.HasPrefix(k, "acct:") && lockedSet[strings.TrimPrefix(k, "acct:")]
		out = append(out, r)
	}
	return out, nil
}

// limitRow is one limit window of a subject, for the usage bars.
type limitRow struct {
	Dimension ratelimit.Dimension
	Rule      string
	Rate      string
	Used      int64
	Max       int64
	Remaining int64
	Share     float64 // Used/Max
	FreesIn   time.Duration
	Override  bool
}

func newLimitRow(l ratelimit.LimitStatus) limitRow {
	row := limitRow{Dimension: l.Dimension, Rule: l.Dimension.RuleID(), Rate: l.Rate.String(), Used: l.Used,
		Max: l.Rate.Limit, Remaining: l.Remaining, FreesIn: l.FreesIn, Override: l.Override}
	if row.Max > 0 {
		row.Share = float64(row.Used) / float64(row.Max)
	}
	return row
}

// Level is the colour of a usage bar: ok, near (80%), full.
func (l limitRow) Level() string {
	switch {
	case l.Max > 0 && l.Remaining <= 0:
		return "full"
	case l.Share >= nearShare:
		return "near"
	}
	return "ok"
}

// exemptionRow is an exemption in force, set at run time or in the config.
type exemptionRow struct {
	Source string
	Reason string
	By     string
	At     time.Time
	Until  time.Time
}

type accountView struct {
	frame
	Subject    string
	Kind       string
	Name       string
	IsAccount  bool
	Limits     []limitRow
	Dimensions []ratelimit.Dimension
	Strikes    int
	Threshold  int
	Window     time.Duration
	Lock       *ratelimit.Lock
	Overrides  []ratelimit.Override
	Exemptions []exemptionRow
	Audit      []ratelimit.AuditEntry
	Dir        *DirEntry

	Held       []HeldMessage
	HeldPart   deskPart
	Compl      []Complaint
	ComplPart  deskPart
	Refusals   []Refusal
	RefPart    deskPart
	Sent       chart
	SentPart   deskPart
	SentTotal  int64
	ChartHours int
}

func (s *Server) accountPage(w http.ResponseWriter, r *http.Request) {
	se := sessionOf(r)
	subj, err := parseSubjectInput(r.URL.Query().Get("s"))
	if err != nil {
		s.badRequest(w, r, se, err.Error())
		return
	}
	ctx := r.Context()
	st, err := s.o.Admin.Status(ctx, subj)
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	v := accountView{Subject: subj.String(), Kind: string(subj.Kind), Name: subj.Name, IsAccount: subj.Kind == ratelimit.KindAccount,
		Strikes: st.Strikes, Threshold: s.o.Policy.Strikes.Threshold, Window: st.StrikeWindow, Lock: st.Lock,
		Overrides: st.Overrides, Audit: st.Audit, Dimensions: subjectDimensions(subj.Kind), ChartHours: 24}
	v.frame = s.frameFor(r, se, "search", subj.Name)
	for _, l := range st.Limits {
		v.Limits = append(v.Limits, newLimitRow(l))
	}
	if e := st.Exemption; e != nil {
		v.Exemptions = append(v.Exemptions, exemptionRow{Source: "runtime", Reason: e.Reason, By: e.By, At: e.At, Until: e.Until})
	}
	if configExempt(subj, s.o.Policy) {
		v.Exemptions = append(v.Exemptions, exemptionRow{Source: "config", Reason: "listed in limits.exempt", By: "config"})
	}
	if v.IsAccount {
		if e, ok := s.o.Directory[subj.Name]; ok {
			v.Dir = &e
		}
		now := s.o.Now()
		held, err := s.desk.Held(ctx, HeldFilter{Account: subj.Name, Limit: 50})
		v.Held, v.HeldPart = held, partOf(err)
		compl, err := s.desk.Complaints(ctx, ComplaintFilter{Attributed: true, Account: subj.Name, Since: now.Add(-30 * 24 * time.Hour), Limit: 50})
		v.Compl, v.ComplPart = compl, partOf(err)
		refs, err := s.desk.Refusals(ctx, RefusalFilter{Account: subj.Name, Since: now.Add(-24 * time.Hour), Limit: 50})
		v.Refusals, v.RefPart = refs, partOf(err)
		sent, err := s.history.SentPerHour(ctx, subj.Name, v.ChartHours, now)
		v.SentPart = partOf(err)
		if err == nil {
			v.Sent = sendingChart(sent, now)
			for _, n := range sent {
				v.SentTotal += n
			}
		}
	}
	s.render(w, r, "account", v)
}

// configExempt reports whether the config itself exempts a subject.
func configExempt(s ratelimit.Subject, p ratelimit.Policy) bool {
	switch s.Kind {
	case ratelimit.KindAccount:
		return p.ExemptAccounts[s.Name]
	case ratelimit.KindSender:
		return p.ExemptSenders[s.Name]
	case ratelimit.KindClient:
		a, err := netip.ParseAddr(s.Name)
		return err == nil && p.ExemptClient(a)
	}
	return false
}

type heldView struct {
	frame
	Account string
	Rule    string
	Error   string
	Part    deskPart
	Held    []HeldMessage
}

func (s *Server) heldPage(w http.ResponseWriter, r *http.Request) {
	v := heldView{}
	v.frame = s.frameFor(r, sessionOf(r), "held", "Held mail")
	q := r.URL.Query()
	acct, err := plainText("the account", q.Get("account"), maxSubject)
	if err == nil && acct != "" {
		acct, err = parseAccountInput(acct)
	}
	if err == nil && !ruleRE.MatchString(q.Get("rule")) {
		err = errors.New("the rule filter is not a rule name")
	}
	if err != nil {
		v.Error = err.Error()
		s.renderStatus(w, r, http.StatusBadRequest, "held", v)
		return
	}
	v.Account, v.Rule = acct, q.Get("rule")
	held, err := s.desk.Held(r.Context(), HeldFilter{Account: acct, Rule: v.Rule, Limit: 500})
	v.Held, v.Part = held, partOf(err)
	if err != nil && !errors.Is(err, ErrUnavailable) {
		s.logStoreError("held", err)
	}
	s.render(w, r, "held", v)
}

type heldMessageView struct {
	frame
	Part deskPart
	Msg  HeldMessage
}

func (s *Server) heldMessagePage(w http.ResponseWriter, r *http.Request) {
	se := sessionOf(r)
	ids, err := parseHeldIDs([]string{r.URL.Query().Get("id")})
	if err != nil {
		s.badRequest(w, r, se, err.Error())
		return
	}
	m, ok, err := s.desk.HeldMessage(r.Context(), ids[0])
	v := heldMessageView{Part: partOf(err), Msg: m}
	v.frame = s.frameFor(r, se, "held", "Held message")
	if err == nil && !ok {
		s.errorPage(w, r, se, http.StatusNotFound, "no held message with that ID (released, purged or expired)")
		return
	}
	s.render(w, r, "heldmsg", v)
}

type complaintsView struct {
	frame
	Attributed bool
	Part       deskPart
	List       []Complaint
}

func (s *Server) complaintsPage(w http.ResponseWriter, r *http.Request) {
	v := complaintsView{Attributed: r.URL.Query().Get("view") != "unattributed"}
	v.frame = s.frameFor(r, sessionOf(r), "complaints", "Complaints")
	switch r.URL.Query().Get("view") {
	case "", "attributed", "unattributed":
	default:
		s.badRequest(w, r, sessionOf(r), "view: want attributed or unattributed")
		return
	}
	list, err := s.desk.Complaints(r.Context(), ComplaintFilter{Attributed: v.Attributed, Since: s.o.Now().Add(-30 * 24 * time.Hour), Limit: 500})
	v.List, v.Part = list, partOf(err)
	s.render(w, r, "complaints", v)
}

// auditPageSize is how many entries one page of the audit log shows.
const auditPageSize = 100

type auditView struct {
	frame
	Subject string
	Actor   string
	Page    int
	Entries []ratelimit.AuditEntry
	// Newer and Older are the links to the pages around this one ("":
	// none).
	Newer, Older string
}

// auditPage shows the audit log of every subject (ratelimit.Admin.AuditLog),
// newest first, a page at a time (?page=, from 1), of one subject (?s=)
// and by one actor (?actor=) when asked.
func (s *Server) auditPage(w http.ResponseWriter, r *http.Request) {
	se := sessionOf(r)
	v := auditView{Page: 1}
	v.frame = s.frameFor(r, se, "audit", "Audit log")
	q := r.URL.Query()
	var query ratelimit.AuditQuery
	if in := q.Get("s"); in != "" {
		subj, err := parseSubjectInput(in)
		if err != nil {
			s.badRequest(w, r, se, err.Error())
			return
		}
		v.Subject, query.Subject = subj.String(), subj
	}
	actor, err := plainText("the actor", q.Get("actor"), maxSubject)
	if err != nil {
		s.badRequest(w, r, se, err.Error())
		return
	}
	v.Actor, query.Actor = actor, actor
	if p := q.Get("page"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > ratelimit.AuditLogKeep/auditPageSize {
			s.badRequest(w, r, se, fmt.Sprintf("page %q: want a number from 1 to %d", p, ratelimit.AuditLogKeep/auditPageSize))
			return
		}
		v.Page = n
	}
	// one entry more than the page tells whether an older page exists
	query.Offset, query.Limit = (v.Page-1)*auditPageSize, auditPageSize+1
	entries, err := s.o.Admin.AuditLog(r.Context(), query)
	if err != nil {
		s.storeFailed(w, r, err)
		return
	}
	link := func(page int) string {
		u := url.Values{}
		if v.Subject != "" {
			u.Set("s", v.Subject)
		}
		if v.Actor != "" {
			u.Set("actor", v.Actor)
		}
		if page > 1 {
			u.Set("page", strconv.Itoa(page))
		}
		if len(u) == 0 {
			return "/audit"
		}
		return "/audit?" + u.Encode()
	}
	if len(entries) > auditPageSize {
		entries, v.Older = entries[:auditPageSize], link(v.Page+1)
	}
	if v.Page > 1 {
		v.Newer = link(v.Page - 1)
	}
	v.Entries = entries
	s.render(w, r, "audit", v)
}

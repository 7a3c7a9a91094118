package ratelimit

import (
	"context"
	"fmt"
	"time"
)

// memDesk is the in-memory store's share of the abuse desk (see desk.go):
// records by queue id and Message-ID, release and purge requests (there
// is one instance: this process) and their outcomes, complaints. Guarded
// by Memory.mu, except the channels.
type memDesk struct {
	records    map[string]memRecord   // "q:"+queue id, "m:"+Message-ID
	complaints map[string][]Complaint // account ("": unattributed) -> complaints, oldest first
	outcomes   map[string]chan DeskOutcome
	requests   chan DeskRequest
	swept      time.Time
}

type memRecord struct {
	rec     MessageRecord
	expires time.Time
}

// deskQueueSize bounds the requests waiting for the executor.
const deskQueueSize = 1024

func (m *Memory) desk() *memDesk {
	if m.dk.records == nil {
		m.dk.records = make(map[string]memRecord)
		m.dk.complaints = make(map[string][]Complaint)
		m.dk.outcomes = make(map[string]chan DeskOutcome)
	}
	return &m.dk
}

// putRecord keeps a record under its queue id and Message-ID. m.mu is held.
func (m *Memory) putRecord(rec MessageRecord, ttl time.Duration, byQueueID bool) {
	d := m.desk()
	e := memRecord{rec: rec, expires: rec.At.Add(ttl)}
	if byQueueID && rec.QueueID != "" {
		d.records["q:"+rec.QueueID] = e
	}
	if rec.MessageID != "" {
		d.records["m:"+rec.MessageID] = e
	}
	if now := rec.At; now.Sub(d.swept) >= sweepEvery || now.Before(d.swept) {
		d.swept = now
		for k, r := range d.records {
			if !now.Before(r.expires) {
				delete(d.records, k)
			}
		}
	}
}

// getRecord returns a record in force. m.mu is held.
func (m *Memory) getRecord(key string, now time.Time) (MessageRecord, bool) {
	e, ok := m.desk().records[key]
	if !ok || !now.Before(e.expires) {
		return MessageRecord{}, false
	}
	return e.rec, true
}

// attribute keeps the Message-ID record of an allowed message. m.mu is held.
func (m *Memory) attribute(req Request, usage []Usage, now time.Time) {
	ttl := m.policy.Desk.attributionRetention()
	if req.Record == nil || ttl <= 0 {
		return
	}
	id := NormalizeMessageID(req.Record.MessageID)
	if id == "" {
		return
	}
	rec := attributionRecord(*req.Record, m.opts.Instance)
	rec.MessageID, rec.At, rec.Usage = id, now, usage
	m.putRecord(rec, ttl, false)
}

// RecordDecision implements Recorder.
func (m *Memory) RecordDecision(_ context.Context, rec MessageRecord) error {
	now := m.clock()
	rec.Instance, rec.At = m.opts.Instance, now
	rec.MessageID = NormalizeMessageID(rec.MessageID)
	if rec.Held {
		rec.Status = StatusHeld
	}
	m.mu.Lock()
	m.putRecord(rec, m.policy.Desk.retention(), true)
	m.indexDecision(rec)
	m.mu.Unlock()
	if rec.Held {
		m.events.emit(Event{Kind: EventHeld, Subject: Account(rec.Account), Record: &rec, At: now})
	}
	return nil
}

// Held implements Admin.
func (m *Memory) Held(_ context.Context, account string) ([]MessageRecord, error) {
	now := m.clock()
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []MessageRecord
	for k, e := range m.desk().records {
		if k[0] == 'q' && e.rec.Held && now.Before(e.expires) && (account == "" || e.rec.Account == account) {
			out = append(out, e.rec)
		}
	}
	sortRecords(out)
	return out, nil
}

// ActOnHeld implements Admin.
func (m *Memory) ActOnHeld(ctx context.Context, action DeskAction, sel HeldSelector, by string, wait time.Duration) ([]DeskOutcome, error) {
	if action != Release && action != Purge {
		return nil, fmt.Errorf("held messages: unknown action %q (want release or purge)", action)
	}
	now := m.clock()
	var found []MessageRecord
	if len(sel.QueueIDs) == 0 {
		var err error
		if found, err = m.Held(ctx, sel.Account); err != nil {
			return nil, err
		}
	} else {
		m.mu.Lock()
		for _, id := range sel.QueueIDs {
			if rec, ok := m.getRecord("q:"+id, now); ok {
				found = append(found, rec)
			}
		}
		m.mu.Unlock()
	}
	recs, unknown := selectHeld(sel, found)
	var out []DeskOutcome
	for _, id := range unknown {
		out = append(out, DeskOutcome{Request: DeskRequest{Action: action, QueueID: id, By: by, At: now}, Status: StatusUnknown,
			Detail: "no held message with this queue id is recorded", At: now})
	}
	var reqs []DeskRequest
	var waits []chan DeskOutcome
	d := m.deskRequests()
	for _, rec := range recs {
		req, done := requestFor(action, rec, by, now)
		if done != nil {
			out = append(out, *done)
			continue
		}
		ch := make(chan DeskOutcome, 1)
		m.mu.Lock()
		m.desk().outcomes[req.ID] = ch
		m.record(Account(req.Account), by, string(action)+"-request", "queue id "+req.QueueID+" on "+req.Instance, now)
		m.mu.Unlock()
		select {
		case d <- req:
		default:
			return nil, fmt.Errorf("%s: %d requests already wait for the executor", action, deskQueueSize)
		}
		reqs, waits = append(reqs, req), append(waits, ch)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for i, req := range reqs {
		select {
		case o := <-waits[i]:
			out = append(out, o)
			continue
		case <-timer.C:
		case <-ctx.Done():
		}
		out = append(out, DeskOutcome{Request: req, Status: StatusPending, At: m.clock(),
			Detail: fmt.Sprintf("no answer within %s (the request stays queued)", wait)})
	}
	return out, nil
}

// deskRequests returns the request channel, made on first use.
func (m *Memory) deskRequests() chan DeskRequest {
	m.deskOnce.Do(func() { m.dk.requests = make(chan DeskRequest, deskQueueSize) })
	return m.dk.requests
}

// NextDeskRequests implements DeskQueue.
func (m *Memory) NextDeskRequests(ctx context.Context, wait time.Duration) ([]DeskRequest, error) {
	d := m.deskRequests()
	t := time.NewTimer(wait)
	defer t.Stop()
	var out []DeskRequest
	select {
	case req := <-d:
		out = append(out, req)
	case <-t.C:
		return nil, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	for {
		select {
		case req := <-d:
			out = append(out, req)
		default:
			return out, nil
		}
	}
}

// CompleteDeskRequest implements DeskQueue.
func (m *Memory) CompleteDeskRequest(_ context.Context, o DeskOutcome) error {
	req := o.Request
	if o.At.IsZero() {
		o.At = m.clock()
	}
	m.mu.Lock()
	d := m.desk()
	for _, k := range []string{"q:" + req.QueueID} {
		if e, ok := d.records[k]; ok {
			e.rec.Status, e.rec.StatusBy, e.rec.StatusAt, e.rec.StatusDetail = o.Status, req.By, o.At, o.Detail
			d.records[k] = e
			if e.rec.MessageID != "" {
				d.records["m:"+e.rec.MessageID] = e
			}
		}
	}
	m.record(Account(req.Account), req.By, string(req.Action), outcomeDetail(o), o.At)
	ch := d.outcomes[req.ID]
	delete(d.outcomes, req.ID)
	m.mu.Unlock()
	if ch != nil {
		ch <- o
	}
	m.events.emit(outcomeEvent(o))
	return nil
}

// DecisionRecord implements Admin.
func (m *Memory) DecisionRecord(_ context.Context, id string) (MessageRecord, bool, error) {
	now := m.clock()
	m.mu.Lock()
	defer m.mu.Unlock()
	if rec, ok := m.getRecord("q:"+id, now); ok {
		return rec, true, nil
	}
	rec, ok := m.getRecord("m:"+NormalizeMessageID(id), now)
	return rec, ok, nil
}

// AddComplaint implements Admin.
func (m *Memory) AddComplaint(_ context.Context, c Complaint, by string) (ComplaintResult, error) {
	now := m.clock()
	if c.ID == "" {
		c.ID = newRequestID()
	}
	c.At, c.AtUS = now, now.UnixMicro()
	dp := m.policy.Desk
	m.mu.Lock()
	d := m.desk()
	keepFrom := now.Add(-dp.complaintKeep())
	from := now.Add(-dp.complaintWindow())
	count := func() (n int) {
		for _, x := range d.complaints[c.Account] {
			if x.At.After(from) {
				n++
			}
		}
		return n
	}
	list := d.complaints[c.Account][:0:0]
	for _, old := range d.complaints[c.Account] {
		if old.ID == c.ID {
			res := ComplaintResult{Complaint: old, Duplicate: true, Complaints: count(), Strikes: m.strikeCount(c.Account, now)}
			res.Locked = m.lockOf(c.Account, now) != nil
			m.mu.Unlock()
			return res, nil
		}
		if old.At.After(keepFrom) {
			list = append(list, old)
		}
	}
	d.complaints[c.Account] = append(list, c)
	res := ComplaintResult{Complaint: c}
	if c.Account == "" {
		m.mu.Unlock()
		m.events.emit(Event{Kind: EventComplaint, Complaint: &c, At: now})
		return res, nil
	}
	res.Complaints = count()
	sp := m.policy.Strikes
	if dp.ComplaintStrikeWeight > 0 && sp.Window > 0 {
		st := m.strikes[c.Account]
		if st == nil {
			st = make(map[string]time.Time)
			m.strikes[c.Account] = st
		}
		for i := 1; i <= dp.ComplaintStrikeWeight; i++ {
			st[fmt.Sprintf("complaint:%s:%d", c.ID, i)] = now
		}
	}
	res.Strikes = m.strikeCount(c.Account, now)
	lock := m.lockOf(c.Account, now)
	res.Locked = lock != nil
	if lock == nil {
		var l *Lock
		switch {
		case dp.ComplaintThreshold > 0 && res.Complaints >= dp.ComplaintThreshold:
			l = &Lock{Reason: fmt.Sprintf("%d complaints within %s", res.Complaints, FormatWindow(dp.complaintWindow())), By: "complaints", At: now}
		case dp.ComplaintStrikeWeight > 0 && sp.Threshold > 0 && res.Strikes >= sp.Threshold:
			l = &Lock{Reason: strikeReason(res.Strikes, sp.Window), By: "auto", At: now}
		}
		if l != nil && m.opts.Monitor {
			res.WouldLock = true
		} else if l != nil {
			if sp.LockFor > 0 {
				l.Until = now.Add(sp.LockFor)
			}
			m.locks[c.Account] = *l
			res.Locked, res.NewlyLocked, res.Lock = true, true, l
		}
	}
	m.record(Account(c.Account), by, "complaint", complaintDetail(c), now)
	m.mu.Unlock()
	m.recent.invalidate(Account(c.Account))
	m.events.emit(Event{Kind: EventComplaint, Subject: Account(c.Account), Complaint: &c, Complaints: res.Complaints, Strikes: res.Strikes, At: now})
	if res.NewlyLocked {
		m.events.emit(Event{Kind: EventLock, Subject: Account(c.Account), Lock: res.Lock, Strikes: res.Strikes, At: now})
	}
	if res.WouldLock {
		m.events.emit(Event{Kind: EventWouldLock, Subject: Account(c.Account), Strikes: res.Strikes, At: now})
	}
	return res, nil
}

// Complaints implements Admin.
func (m *Memory) Complaints(_ context.Context, account string) ([]Complaint, error) {
	now := m.clock()
	m.mu.Lock()
	defer m.mu.Unlock()
	from := now.Add(-m.policy.Desk.complaintKeep())
	var out []Complaint
	for _, c := range m.desk().complaints[account] {
		if c.At.After(from) {
			out = append(out, c)
		}
	}
	sortComplaints(out)
	return out, nil
}

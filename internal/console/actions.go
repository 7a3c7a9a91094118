package console

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/abusemilter/abusemilter/ratelimit"
)

// accountAction runs lock, unlock, reset, override, exempt and unexempt
// on a subject through the store's admin API, the functions abusectl
// calls, with the console user as the one who acted; then it goes back to
// the subject's page with a message.
func (s *Server) accountAction(w http.ResponseWriter, r *http.Request) {
	se := sessionOf(r)
	ctx := r.Context()
	f := r.PostForm
	subj, err := parseSubjectInput(f.Get("s"))
	if err != nil {
		s.badRequest(w, r, se, err.Error())
		return
	}
	action := r.PathValue("action")
	who := by(se)
	var msg string
	fail := func(err error) {
		s.inputError(w, r, se, subj, err)
	}
	switch action {
	case "lock":
		if subj.Kind != ratelimit.KindAccount {
			fail(fmt.Errorf("only accounts can be locked, %s is a %s", subj, subj.Kind))
			return
		}
		reason, err := parseReason(f.Get("reason"))
		if err != nil {
			fail(err)
			return
		}
		d, err := parseFor(f.Get("for"))
		if err != nil {
			fail(err)
			return
		}
		if err := s.o.Admin.Lock(ctx, subj.Name, reason, who, d); err != nil {
			s.storeFailed(w, r, err)
			return
		}
		msg = fmt.Sprintf("Locked %s %s.", subj.Name, forText(d))
		s.audited(se, action, subj, zap.String("reason", reason), zap.Duration("for", d))
	case "unlock":
		if subj.Kind != ratelimit.KindAccount {
			fail(fmt.Errorf("only accounts are locked, %s is a %s", subj, subj.Kind))
			return
		}
		st, err := s.o.Admin.Status(ctx, subj)
		if err != nil {
			s.storeFailed(w, r, err)
			return
		}
		if st.Lock == nil {
			s.flashBack(w, r, se, subj, fmt.Sprintf("%s is not locked (strikes: %d; to clear them use reset).", subj.Name, st.Strikes), true)
			return
		}
		if err := s.o.Admin.Unlock(ctx, subj.Name, who); err != nil {
			s.storeFailed(w, r, err)
			return
		}
		msg = fmt.Sprintf("Unlocked %s (was locked by %s); strikes cleared.", subj.Name, st.Lock.By)
		s.audited(se, action, subj)
	case "reset":
		var dim ratelimit.Dimension
		if l := f.Get("limit"); l != "" && l != "all" {
			if dim, err = parseLimitInput(subj, l); err != nil {
				fail(err)
				return
			}
		}
		if err := s.o.Admin.Reset(ctx, subj, dim, who); err != nil {
			s.storeFailed(w, r, err)
			return
		}
		what := "every counter"
		if dim != "" {
			what = "the " + string(dim) + " counter"
		} else if subj.Kind == ratelimit.KindAccount {
			what += " and the strikes"
		}
		msg = fmt.Sprintf("Reset %s of %s.", what, subj)
		s.audited(se, action, subj, zap.String("limit", string(dim)))
	case "override":
		dim, err := parseLimitInput(subj, f.Get("limit"))
		if err != nil {
			fail(err)
			return
		}
		if f.Get("remove") != "" {
			st, err := s.o.Admin.Status(ctx, subj)
			if err != nil {
				s.storeFailed(w, r, err)
				return
			}
			found := false
			for _, ov := range st.Overrides {
				found = found || ov.Dimension == dim
			}
			if !found {
				s.flashBack(w, r, se, subj, fmt.Sprintf("%s has no override of %s.", subj, dim), true)
				return
			}
			if err := s.o.Admin.SetOverride(ctx, subj, dim, nil, 0, who); err != nil {
				s.storeFailed(w, r, err)
				return
			}
			msg = fmt.Sprintf("Removed the override of %s for %s: the configured rates apply.", dim, subj)
			s.audited(se, "override-remove", subj, zap.String("limit", string(dim)))
			break
		}
		rates, err := parseRatesInput(f.Get("rate"))
		if err != nil {
			fail(err)
			return
		}
		d, err := parseFor(f.Get("for"))
		if err != nil {
			fail(err)
			return
		}
		if err := s.o.Admin.SetOverride(ctx, subj, dim, rates, d, who); err != nil {
			s.storeFailed(w, r, err)
			return
		}
		msg = fmt.Sprintf("%s of %s is now %s %s.", dim, subj, ratesText(rates), forText(d))
		s.audited(se, action, subj, zap.String("limit", string(dim)), zap.String("rates", ratesText(rates)), zap.Duration("for", d))
	case "exempt":
		reason, err := parseReason(f.Get("reason"))
		if err != nil {
			fail(err)
			return
		}
		d, err := parseFor(f.Get("for"))
		if err != nil {
			fail(err)
			return
		}
		if err := s.o.Admin.Exempt(ctx, subj, reason, d, who); err != nil {
			s.storeFailed(w, r, err)
			return
		}
		msg = fmt.Sprintf("Exempted %s from every limit %s.", subj, forText(d))
		s.audited(se, action, subj, zap.String("reason", reason), zap.Duration("for", d))
	case "unexempt":
		st, err := s.o.Admin.Status(ctx, subj)
		if err != nil {
			s.storeFailed(w, r, err)
			return
		}
		if st.Exemption == nil {
			m := fmt.Sprintf("%s has no exemption set at run time.", subj)
			if configExempt(subj, s.o.Policy) {
				m += " It is exempt in the config (limits.exempt)."
			}
			s.flashBack(w, r, se, subj, m, true)
			return
		}
		if err := s.o.Admin.Unexempt(ctx, subj, who); err != nil {
			s.storeFailed(w, r, err)
			return
		}
		msg = fmt.Sprintf("Removed the exemption of %s: its limits apply again.", subj)
		s.audited(se, action, subj)
	default:
		s.errorPage(w, r, se, http.StatusNotFound, "no such action")
		return
	}
	s.flashBack(w, r, se, subj, msg, false)
}

// audited logs an action with the console user (the store's audit log has
// it too, written by the admin function).
func (s *Server) audited(se *session, action string, subj ratelimit.Subject, fields ...zap.Field) {
	s.log.Info("console: "+action, append([]zap.Field{zap.String("user", se.user), zap.String("subject", subj.String())}, fields...)...)
}

func (s *Server) logStoreError(what string, err error) {
	s.log.Error("console: store error", zap.String("reading", what), zap.Error(err))
}

// inputError answers an invalid form with 400 and what was wrong.
func (s *Server) inputError(w http.ResponseWriter, r *http.Request, se *session, subj ratelimit.Subject, err error) {
	s.errorPage(w, r, se, http.StatusBadRequest, err.Error())
}

// flashBack goes back to the subject's page with a message.
func (s *Server) flashBack(w http.ResponseWriter, r *http.Request, se *session, subj ratelimit.Subject, msg string, isErr bool) {
	s.invalidateOverview()
	s.sessions.setFlash(se, msg, isErr)
	http.Redirect(w, r, "/account?s="+url.QueryEscape(subj.String()), http.StatusSeeOther)
}

func forText(d time.Duration) string {
	if d == 0 {
		return "until removed"
	}
	return "for " + shortDuration(d)
}

func ratesText(rates []ratelimit.Rate) string {
	parts := make([]string, len(rates))
	for i, r := range rates {
		parts[i] = r.String()
	}
	return strings.Join(parts, ",")
}

type heldActionView struct {
	frame
	Action   string
	IDs      []string
	Msgs     []HeldMessage
	Done     bool
	Outcomes []Outcome
	Part     deskPart
	Back     string
}

// heldAction releases or purges held messages: a first POST shows what
// would be done and asks for confirmation (this works with scripts off);
// the confirmed POST acts and shows each outcome.
func (s *Server) heldAction(w http.ResponseWriter, r *http.Request) {
	se := sessionOf(r)
	action := r.PathValue("action")
	if action != "release" && action != "purge" {
		s.errorPage(w, r, se, http.StatusNotFound, "no such action")
		return
	}
	ids, err := parseHeldIDs(r.PostForm["id"])
	if err != nil {
		s.badRequest(w, r, se, err.Error())
		return
	}
	ctx := r.Context()
	v := heldActionView{Action: action, IDs: ids, Back: "/held"}
	v.frame = s.frameFor(r, se, "held", strings.ToUpper(action[:1])+action[1:]+" held mail")
	if r.PostForm.Get("confirm") != "yes" {
		for _, id := range ids {
			m, ok, err := s.desk.HeldMessage(ctx, id)
			if err != nil {
				v.Part = partOf(err)
				break
			}
			if ok {
				v.Msgs = append(v.Msgs, m)
			} else {
				v.Msgs = append(v.Msgs, HeldMessage{ID: id, Subject: "(no longer held)"})
			}
		}
		s.render(w, r, "heldaction", v)
		return
	}
	var out []Outcome
	if action == "release" {
		out, err = s.desk.Release(ctx, ids, by(se))
	} else {
		out, err = s.desk.Purge(ctx, ids, by(se))
	}
	v.Done, v.Outcomes, v.Part = true, out, partOf(err)
	if err != nil && !errors.Is(err, ErrUnavailable) {
		s.logStoreError(action, err)
	}
	s.invalidateOverview()
	ok := 0
	for _, o := range out {
		if o.OK {
			ok++
		}
	}
	s.log.Info("console: "+action, zap.String("user", se.user), zap.Strings("ids", ids), zap.Int("done", ok))
	s.render(w, r, "heldaction", v)
}

// invalidateOverview makes the next overview read the store again, so
// that an action shows at once.
func (s *Server) invalidateOverview() {
	s.overviewMu.Lock()
	defer s.overviewMu.Unlock()
	s.overviewData = nil
}

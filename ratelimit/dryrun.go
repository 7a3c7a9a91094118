package ratelimit

import "context"

// DryRun returns a view of l for trials (abusescan --milter): it charges
// nothing and adds no strike, whatever the request. Its CheckAndCharge
// reads the account's lock when the store can say (Status), so that a
// locked account's trial is refused as its real mail would be; the rate
// limits themselves are not evaluated (that would need the store's own
// check without its charge), so a trial never reports a rate deferral
// except one this instance already holds (Recent, served as usual).
// An error reading the lock is returned, and the engine's fail mode then
// decides, as it would for real mail.
func DryRun(l Limiter) Limiter { return dryRun{l} }

type dryRun struct{ l Limiter }

// statusReader is the part of Admin a dry run reads.
type statusReader interface {
	Status(ctx context.Context, s Subject) (Status, error)
}

// unwrapper is a limiter that wraps another (a timing wrapper, say).
type unwrapper interface{ Unwrap() Limiter }

// As returns the first limiter of the chain l, l.Unwrap(), ... that is a
// T, as errors.As does for wrapped errors: a store's optional
// capabilities (Recorder, CampaignCounter, Admin's Status) stay reachable
// through a wrapper such as the daemon's timing one, which need not
// repeat every one of them. A dry run has no Unwrap on purpose: through
// it a trial neither records nor counts.
func As[T any](l Limiter) (T, bool) {
	for l != nil {
		if t, ok := l.(T); ok {
			return t, true
		}
		u, ok := l.(unwrapper)
		if !ok {
			break
		}
		l = u.Unwrap()
	}
	var zero T
	return zero, false
}

// CheckAndCharge implements Limiter without charging.
func (d dryRun) CheckAndCharge(ctx context.Context, req Request) (Decision, error) {
	if sr, ok := As[statusReader](d.l); ok {
		st, err := sr.Status(ctx, Account(req.Account))
		if err != nil {
			return Decision{}, err
		}
		if st.Lock != nil {
			return Decision{Locked: true, Lock: st.Lock}, nil
		}
	}
	if req.Outcome == Strike {
		return Decision{}, nil
	}
	return Decision{Allowed: true}, nil
}

// Recent implements Limiter: it only reads.
func (d dryRun) Recent(account string) (Decision, bool) { return d.l.Recent(account) }

// Close implements Limiter; the store belongs to the real engine.
func (dryRun) Close() error { return nil }

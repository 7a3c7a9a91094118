// Package ratelimit owns the per-account counters and account state (strikes,
// locks, overrides, exemptions) behind one interface, Limiter, with two
// stores: Redis (shared by every milter of a provider) and in-memory (the
// embedded default for one host, and for tests of other packages). Both also
// implement Admin, the API of the admin CLI, with the same semantics.
//
// Every message costs one atomic call, CheckAndCharge, made at end of message
// after the rules have decided: a message the rules accepted is checked
// against every applicable limit and charged to all of them only if none is
// exceeded; a message the rules rejected is never charged but adds a strike.
//
// Semantics:
//   - Limits mean "at most N within any window of length W", with no double
//     burst at fixed-window edges. Each window of a subject's dimension is a
//     sliding-window counter of 60 buckets (window.go): the bucket a window's
//     start falls in is counted whole, so a window never holds more than N,
//     and a charge is remembered for between W and W + W/60. A counter's
//     size is fixed whatever the traffic. Time is the Redis server's clock
//     (TIME inside the script), so every milter agrees.
//   - Dimensions: account messages, account recipients (one per envelope
//     recipient), messages per envelope sender (normalised: case and +tag),
//     messages per client IP (unauthenticated clients only), and new
//     recipients per account: a recipient counts once when the account has
//     not sent to it within the longest window of that limit.
//   - A refusal by a limit, or a rules rejection (Outcome Strike), adds a
//     strike; a retried message (same Message-ID) strikes once per strike
//     window. Strikes reaching the threshold lock the account (monitor mode:
//     Decision.WouldLock and an event, never a lock). Locks, runtime
//     overrides and exemptions live in the store and are read by the same
//     call.
//   - Exemptions (configured or runtime) of the account, the sender or the
//     client exempt the whole message from every limit; locks still apply.
//   - Recent serves refusals this instance saw (locks, account limits) until
//     their retry time, capped by Options.RecentMax, without I/O. Every
//     admin change drops the refusals it affects at once, on every instance
//     (Redis: by PUBLISH on "<prefix>admin", see Redis).
//   - Faults: each call has a deadline (RedisOptions.Timeout, no retries);
//     after Options.BreakerFailures consecutive failures the breaker opens
//     and calls fail at once (wrapping ErrUnavailable) while one probe per
//     Options.BreakerProbe checks whether Redis is back. The engine applies
//     its fail mode to every error. A Redis that lost its data simply starts
//     counting from zero: nobody is locked.
//
// Campaigns: both stores also implement CampaignCounter, which counts per
// message fingerprint the distinct accounts that sent it within a window
// (campaign.go): one more call per message, made beside the rules.
//
// See Redis for the key layout and for what Cluster changes.
package ratelimit

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Rate is a limit of N events within any window of length Window.
type Rate struct {
	Limit  int64
	Window time.Duration
}

// ParseRate parses "N/DURATION", e.g. "200/1h", "20/10m", "500/24h". A
// duration without a number means one unit: "100/h" is 100 per hour, and
// "d" means 24 hours.
func ParseRate(s string) (Rate, error) {
	n, w, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return Rate{}, fmt.Errorf("rate %q: want N/DURATION such as 200/1h", s)
	}
	limit, err := strconv.ParseInt(strings.TrimSpace(n), 10, 64)
	if err != nil || limit < 0 {
		return Rate{}, fmt.Errorf("rate %q: %q is not a non-negative whole number", s, n)
	}
	written := strings.TrimSpace(w)
	w = written
	if w != "" && (w[0] < '0' || w[0] > '9') {
		w = "1" + w
	}
	// Errors echo the window as written ("xx", not the "1xx" parsed).
	var window time.Duration
	if strings.HasSuffix(w, "d") {
		days, err := strconv.ParseInt(strings.TrimSuffix(w, "d"), 10, 64)
		if err != nil {
			return Rate{}, fmt.Errorf("rate %q: bad window %q (want a duration such as 10m, 1h, 24h or 7d)", s, written)
		}
		window = time.Duration(days) * 24 * time.Hour
	} else if window, err = time.ParseDuration(w); err != nil {
		return Rate{}, fmt.Errorf("rate %q: bad window %q (want a duration such as 10m, 1h, 24h or 7d)", s, written)
	}
	if window < time.Second {
		return Rate{}, fmt.Errorf("rate %q: window must be at least 1s", s)
	}
	// A window's counter is named by FormatWindow, which writes whole
	// seconds: 1.5s and 1s would share one counter with buckets of two
	// widths.
	if window%time.Second != 0 {
		return Rate{}, fmt.Errorf("rate %q: window must be whole seconds", s)
	}
	return Rate{Limit: limit, Window: window}, nil
}

// String formats the rate as it is written in config and replies: "20/10m".
func (r Rate) String() string {
	return strconv.FormatInt(r.Limit, 10) + "/" + FormatWindow(r.Window)
}

// FormatWindow writes a window compactly: 10m, 1h, 24h, 90s.
func FormatWindow(d time.Duration) string {
	switch {
	case d > 0 && d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d > 0 && d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	default:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
}

// Dimension is what a limit counts.
type Dimension string

// The counted dimensions. Each has a stable rule ID used in replies and logs.
const (
	AccountMessages      Dimension = "account_messages"       // messages per account
	AccountRecipients    Dimension = "account_recipients"     // recipients per account
	SenderMessages       Dimension = "sender_messages"        // messages per envelope sender address
	ClientMessages       Dimension = "client_messages"        // messages per client IP, unauthenticated only
	AccountNewRecipients Dimension = "account_new_recipients" // distinct new recipients per account
)

// Dimensions lists every dimension in a stable order.
var Dimensions = []Dimension{AccountMessages, AccountRecipients, SenderMessages, ClientMessages, AccountNewRecipients}

// RuleID returns the rule ID reported when a limit of this dimension is hit.
func (d Dimension) RuleID() string {
	switch d {
	case AccountMessages:
		return "ACCOUNT_MSG_RATE"
	case AccountRecipients:
		return "ACCOUNT_RCPT_RATE"
	case SenderMessages:
		return "SENDER_MSG_RATE"
	case ClientMessages:
		return "CLIENT_MSG_RATE"
	case AccountNewRecipients:
		return "ACCOUNT_NEW_RCPT_RATE"
	}
	return strings.ToUpper(string(d))
}

// RuleAccountLocked is the rule ID of a refusal because the account is locked.
const RuleAccountLocked = "ACCOUNT_LOCKED"

// Limits holds the rates for each dimension; a dimension may have several
// windows (e.g. 20/10m and 500/24h), all of which apply.
type Limits map[Dimension][]Rate

// Outcome says what the rules decided before the limiter is asked.
type Outcome int

const (
	// Charge: the rules accepted the message; check every limit and charge
	// all of them if none is exceeded.
	Charge Outcome = iota
	// Strike: the rules rejected the message; charge nothing, add a strike
	// (at most one per account and Message-ID per strike window).
	Strike
)

// Request is one message presented to the limiter.
type Request struct {
	Account       string
	Sender        string // envelope sender; normalised by the limiter
	Client        netip.Addr
	Authenticated bool
	Recipients    []string // envelope recipients; normalised by the limiter
	MessageID     string   // for de-duplicating strikes of a retried message
	Outcome       Outcome
	// Monitor records strikes and "would lock" but never locks.
	Monitor bool
	// Record, when set with a MessageID, is kept as the message's
	// Message-ID record when the message is allowed, in the same call (see
	// desk.go); the store adds its instance, its time and the usage.
	Record *MessageRecord
}

// Usage is the state of one limit window after a call.
type Usage struct {
	Dimension Dimension
	Key       string // the counted subject: account, sender or client
	Rate      Rate
	Used      int64
}

// Lock describes a locked account.
type Lock struct {
	Reason string
	By     string // "auto" or the admin who locked it
	At     time.Time
	Until  time.Time // zero: until unlocked
}

// Decision is the limiter's answer for one Request.
type Decision struct {
	// Allowed is true when the message was charged (Outcome Charge) and no
	// limit or lock stood in the way. For Outcome Strike it is false.
	Allowed bool
	// Locked is set when the account is locked; Lock tells why.
	Locked bool
	Lock   *Lock
	// Exceeded names the limit that refused the message.
	Exceeded   Dimension
	Rate       Rate
	RetryAfter time.Duration
	// Strikes is the account's strike count in the current strike window.
	Strikes int
	// NewlyLocked is set when this very call locked the account (or would
	// have, in monitor mode: see WouldLock).
	NewlyLocked bool
	WouldLock   bool
	Exempt      bool
	Usage       []Usage
}

// Limiter is implemented by the Redis and in-memory stores.
type Limiter interface {
	// CheckAndCharge makes the one atomic check-and-charge (or strike) call
	// for a message. An error means the store could not answer in time; the
	// caller applies its configured fail mode.
	CheckAndCharge(ctx context.Context, req Request) (Decision, error)
	// Recent returns a refusal this limiter instance saw for the account and
	// that has not yet expired (a lock or an exceeded limit) nor been undone
	// by an admin change, without I/O: used at MAIL FROM to refuse before
	// the body is uploaded.
	Recent(account string) (Decision, bool)
	// Close releases connections.
	Close() error
}

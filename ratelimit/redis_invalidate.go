package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Tuning of the admin-change subscription (see Redis).
const (
	// subscriptionIdle is how long the subscription may stay silent before
	// it is pinged; a ping without an answer within as long again counts as
	// a dead connection.
	subscriptionIdle = 5 * time.Second
	// resubscribeMin and resubscribeMax bound the pause between attempts to
	// reach a Redis that is down.
	resubscribeMin = 50 * time.Millisecond
	resubscribeMax = time.Second
)

// adminChannel is the channel that admin changes are published on.
func (r *Redis) adminChannel() string { return r.prefix + "admin" }

// announce drops this instance's cached refusals that an admin change of s
// made stale and publishes s so that every other instance does the same. It
// is called once the change is saved; what names the change in the error.
func (r *Redis) announce(ctx context.Context, s Subject, what string) error {
	r.recent.invalidate(s)
	if err := r.client.Publish(ctx, r.adminChannel(), s.String()).Err(); err != nil {
		return fmt.Errorf("%s: saved, but telling the milters failed (they drop refusals they cached within %s): %w",
			what, r.opts.RecentMax, err)
	}
	return nil
}

// subscriber listens for admin changes on its own connection and drops the
// cached refusals they name. The per-message path never waits for it.
type subscriber struct {
	r *Redis

	mu     sync.Mutex
	ps     *redis.PubSub // nil until the loop subscribes
	closed bool
	stop   chan struct{}
	done   chan struct{}
}

// startSubscriber starts the loop; stop ends it.
func startSubscriber(r *Redis) *subscriber {
	s := &subscriber{r: r, stop: make(chan struct{}), done: make(chan struct{})}
	go s.run()
	return s
}

// close stops the loop and waits for it.
func (s *subscriber) close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.stop)
		if s.ps != nil {
			_ = s.ps.Close() // interrupts a blocked receive
		}
	}
	s.mu.Unlock()
	<-s.done
}

// subscribe replaces the PubSub by a new one; false once closed.
func (s *subscriber) subscribe(ctx context.Context) (*redis.PubSub, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, false
	}
	if s.ps != nil {
		_ = s.ps.Close()
	}
	// go-redis dials here and, after any connection error, again on the next
	// receive, subscribing anew each time; each confirmation is a
	// *redis.Subscription.
	s.ps = s.r.client.Subscribe(ctx, s.r.adminChannel())
	return s.ps, true
}

// pause waits d or until closed; false once closed.
func (s *subscriber) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-s.stop:
		return false
	case <-t.C:
		return true
	}
}

func (s *subscriber) run() {
	defer close(s.done)
	ctx := context.Background()
	recent := &s.r.recent
	ps, ok := s.subscribe(ctx)
	if !ok {
		return
	}
	backoff, pinged := resubscribeMin, false
	for {
		msg, err := ps.ReceiveTimeout(ctx, subscriptionIdle)
		select {
		case <-s.stop:
			return
		default:
		}
		var netErr net.Error
		switch {
		case err == nil:
			backoff, pinged = resubscribeMin, false
		case errors.As(err, &netErr) && netErr.Timeout() && !pinged:
			// Silent for a while: a ping proves the connection still works.
			pinged = ps.Ping(ctx) == nil
			continue
		case errors.As(err, &netErr) && netErr.Timeout():
			// The ping went unanswered: start over on a new connection.
			recent.setConfirmed(false)
			if ps, ok = s.subscribe(ctx); !ok {
				return
			}
			pinged = false
			continue
		default:
			// Connection lost or Redis down: go-redis reconnects on the next
			// receive; until it confirms, Recent serves refusals briefly.
			recent.setConfirmed(false)
			if !s.pause(backoff) {
				return
			}
			backoff = min(2*backoff, resubscribeMax)
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				recent.setConfirmed(true)
			}
		case *redis.Message:
			if inst, ok := strings.CutPrefix(m.Payload, "desk:"); ok {
				// a release or purge request, not an admin change
				if inst == s.r.opts.Instance {
					select {
					case s.r.deskWake <- struct{}{}:
					default:
					}
				}
				continue
			}
			subj, ok := parseAnnounced(m.Payload)
			if !ok {
				recent.invalidateAll()
				continue
			}
			recent.invalidate(subj)
		}
	}
}

// parseAnnounced reads a Subject as announce publishes it (Subject.String).
func parseAnnounced(payload string) (Subject, bool) {
	kind, name, ok := strings.Cut(payload, ":")
	switch SubjectKind(kind) {
	case KindAccount, KindSender, KindClient:
		return Subject{SubjectKind(kind), name}, ok && name != ""
	}
	return Subject{}, false
}

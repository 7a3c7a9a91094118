package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"time"

	"go.uber.org/zap"
)

// webhookSender POSTs events to one webhook.
type webhookSender struct {
	hook Webhook
	n    *Notifier
}

// permanentError is a failure that retrying will not fix (a 4xx answer
// other than 408 and 429, a redirect, a bad URL).
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// send delivers ev, retrying with exponential backoff.
func (w *webhookSender) send(ctx context.Context, ev Event) error {
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encoding event: %w", err)
	}
	var last error
	for attempt := 0; attempt <= w.hook.Retries; attempt++ {
		if attempt > 0 {
			wait := w.n.backoff(attempt)
			w.n.log.Debug("webhook retry", zap.String("url", w.safeURL()),
				zap.Int("attempt", attempt+1), zap.Duration("wait", wait), zap.Error(last))
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("webhook %s: gave up while waiting to retry: %w (last error: %w)", w.safeURL(), ctx.Err(), last)
			case <-t.C:
			}
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("webhook %s: %w", w.safeURL(), err)
		}
		last = w.post(ctx, ev, body)
		if last == nil {
			return nil
		}
		var perm permanentError
		if errors.As(last, &perm) {
			break
		}
	}
	return fmt.Errorf("webhook %s: %w", w.safeURL(), last)
}

// post makes one attempt.
func (w *webhookSender) post(ctx context.Context, ev Event, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, w.hook.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.hook.URL, bytes.NewReader(body))
	if err != nil {
		return permanentError{errors.New("invalid webhook URL")}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", w.n.opts.UserAgent)
	req.Header.Set("X-Abusemilter-Event", string(ev.Kind))
	req.Header.Set("X-Abusemilter-Event-Id", ev.ID)
	if w.hook.Token != "" {
		if w.hook.TokenHeader != "" {
			req.Header.Set(w.hook.TokenHeader, string(w.hook.Token))
		} else {
			req.Header.Set("Authorization", "Bearer "+string(w.hook.Token))
		}
	}
	resp, err := w.n.opts.HTTPClient.Do(req)
	if err != nil {
		// *url.Error repeats the URL, which may carry a secret in its
		// query: keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode >= 500:
		return fmt.Errorf("answered %s", resp.Status)
	}
	return permanentError{fmt.Errorf("answered %s (not retried)", resp.Status)}
}

// safeURL is the webhook URL without query, fragment and user info, for
// logs and errors.
func (w *webhookSender) safeURL() string {
	u, err := url.Parse(w.hook.URL)
	if err != nil {
		return "(invalid URL)"
	}
	return u.Scheme + "://" + u.Host + u.Path
}

// backoff is the wait before retry number attempt (1 for the first retry):
// BackoffBase doubled per further retry, capped at BackoffMax, jittered
// down by up to half so that several milters do not retry in step.
func (n *Notifier) backoff(attempt int) time.Duration {
	d := n.opts.BackoffBase
	for i := 1; i < attempt && d < n.opts.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, n.opts.BackoffMax)
	return d/2 + rand.N(d/2+1)
}

package metrics

import "github.com/abusemilter/abusemilter/internal/notify"

// The notifier counts its deliveries through these metrics.
var _ notify.Observer = (*Metrics)(nil)

// Package daemon owns the milter daemon's life cycle (start, reload on
// SIGHUP, graceful stop on SIGTERM, sd_notify, the observer that links
// store events to metrics and notifications) and the one place where a
// validated config becomes runtime objects: the account directory, the
// rate policy and store, the engine, the DNS resolver, the notifier's and
// the milter server's options. The daemon, abusescan and abusectl all build
// through this assembly, so they agree on what a config means.
package daemon

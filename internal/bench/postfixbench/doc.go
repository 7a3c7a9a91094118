// Package postfixbench measures mail throughput through a real Postfix on
// loopback (internal/testutil/testenv): smtp-source sends through Postfix,
// which relays to a sink, once with no milter, once with a no-op go-milter
// that replies to every step (milterload --serve-noop), and once each with
// abusemilter on its embedded store and on a Redis store, and prints
// messages/s and the ratios measured in the same run. It is a measurement,
// not a test: it runs only with -postfix.bench (make bench-postfix).
package postfixbench

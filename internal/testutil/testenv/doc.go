// Package testenv runs real mail software for end-to-end tests: a real
// Postfix (and, where it can be unpacked, a real Sendmail) with its own
// configuration, queue and log under a temporary directory, an SMTP sink
// that records what the MTA relays, the swaks SMTP client, and a small Go
// SMTP client for what swaks cannot do (several transactions on one
// connection, XCLIENT by hand).
//
// Everything listens on 127.0.0.1 on free ports, so several instances and
// several test binaries can run side by side. Nothing here talks to the
// system's own MTA or to the network.
//
// A test that needs a missing tool (postfix, swaks, m4, root) is skipped
// with a message naming the tool, unless ABUSEMILTER_REQUIRE_TOOLS=1 is set
// (as CI does): then it fails. Waiting is always on an observable condition
// (a message at the sink, a line in the MTA log) with a deadline, never on
// a fixed sleep.
package testenv

// Package loadgen drives any milter with the load a Postfix server would put
// on it, and measures what comes back.
//
// It speaks the milter protocol (Sendmail's libmilter protocol, as
// implemented by github.com/emersion/go-milter's client) over TCP or a unix
// socket. Per message it does what Postfix 3.7 does: CONNECT and HELO once per
// milter connection, then per transaction MAIL with the connection and SASL
// macros, RCPT per recipient, one HEADER per field, EOH, BODY in chunks of at
// most 64 KiB, end of message, and ABORT after every transaction (Postfix
// sends ABORT after successful transactions too). One milter connection
// carries several messages, as one SMTP session does.
//
// Messages come from a Source: a generated pool (realistic headers, a mix of
// customer accounts and a share of forged senders) or a corpus of .eml files.
// Run applies a load shape (concurrency, a message count or a duration, an
// optional open-loop rate) and returns a Report: throughput, latency
// percentiles per protocol stage and per message, the verdict mix with the
// reply codes and texts, and errors by kind. NoOpServer runs an in-process
// milter that accepts everything, the ceiling a real milter is compared with.
package loadgen

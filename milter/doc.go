// Package milter is the protocol glue between an MTA (Postfix, Sendmail)
// and the decision engine: it turns github.com/emersion/go-milter v0.5.0
// callbacks into one per-message state (envelope, headers in order, a capped
// body sample), asks the scoring.Engine at MAIL FROM, at each RCPT TO and at
// end of message, and maps each verdict to a milter response with a custom
// SMTP reply. No rule logic lives here.
//
// The package also wraps what go-milter leaves out: an idle timeout per
// session, a cap on concurrent sessions (sessions past it are answered with a
// tempfail), a configurable cap on the declared packet length (checked before
// the library allocates anything), and a graceful Shutdown that lets
// sessions in the middle of a message finish.
//
// Library traps this package works around (see the project's MILTER-NOTES):
// each macro packet replaces the library's macro map, so macros are copied
// into our own state at every callback; go-milter replaces the backend after
// a final response, so responses returned here always report Continue() ==
// true and the per-connection backend lives as long as the connection; a
// built-in reject or tempfail from RcptTo would drop the transaction's state,
// so single recipients are refused with a custom reply; go-milter answers
// the MTA's option negotiation with its fixed protocol options whatever the
// MTA offered, so the connection wrapper limits them to the offer (the
// milter asks for SMFIP_HDR_LEADSPC, and header values are then handled in
// one place, headerValues).
package milter

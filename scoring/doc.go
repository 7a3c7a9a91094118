// Package scoring owns the decision about one outbound message: the message
// and envelope types, the rules (pure functions of envelope, headers, a body
// sample and the sending account's policy), the findings they produce, and
// the verdict — accept, defer (SMTP 4xx) or reject (SMTP 5xx) — with the
// reply text that names the policy clause and the deciding rule.
//
// The Engine is the one entry point shared by the milter (one method per SMTP
// stage) and the offline scanner. It consults the rate limiter (package
// ratelimit) through a narrow interface, once per message, after the rules
// have decided. Replies follow RFC 5321 (reply codes) and RFC 3463 (enhanced
// status codes); header handling follows RFC 5322.
package scoring

// Package console is the abuse desk console: a server-rendered web
// interface (html/template, assets embedded) on the rate store's admin
// API, the one abusectl uses. It shows locked accounts, accounts close to
// a limit, each account's limits, strikes, lock, overrides, exemptions and
// audit log, and lets operators lock, unlock, reset, override and exempt,
// audited with the console user's name. Held mail, complaints and the
// records behind refusals come through the Desk interface, and an
// account's hourly sending through History; without them those parts say
// they are not available with this version of the store.
//
// Security: users and roles (viewer, operator) in a file of bcrypt hashes,
// or a trusted reverse proxy's header; sessions in HttpOnly, SameSite=Strict
// cookies (Secure under TLS) with an idle timeout; a CSRF token on every
// state-changing request; failed logins throttled per user and per address;
// a Content-Security-Policy without inline scripts or styles.
package console

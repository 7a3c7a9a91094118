// Package layout holds no code: its test checks the module's import graph
// against the architecture (docs/flow.md): identity is the leaf, scoring
// and ratelimit import nothing under internal/, nothing imports milter/
// but the daemon's assembly and the commands, and no product package
// imports test or benchmark support.
package layout

//go:build !unix

package notify

import "os/exec"

// setProcessGroup is a no-op where process groups are not available: a
// timeout kills the command itself only.
func setProcessGroup(*exec.Cmd) {}

//go:build unix

package notify

import (
	"os/exec"
	"syscall"
)

// setProcessGroup runs the command in a process group of its own and makes
// a timeout kill the whole group, so that a script's children die with it.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}

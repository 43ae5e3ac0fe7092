package testproc

import (
	"os/exec"
	"syscall"
)

// DieWithParent makes the kernel kill cmd's process if the test process
// dies (a panic, a timeout) before its cleanup can stop it.
func DieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

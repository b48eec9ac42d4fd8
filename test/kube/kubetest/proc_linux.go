package kubetest

import "syscall"

// sysProcAttr makes the kernel kill a child when the test binary dies
// without running its cleanups (a go test timeout, a kill), so that no
// etcd or API server outlives its test.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

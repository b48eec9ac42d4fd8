//go:build !signet_testhooks

package agentcmd

// cgroupProcRoot is "" (the real /proc): a product build has no test hooks
// (see k8s_testhook.go, built with -tags signet_testhooks).
func cgroupProcRoot(func(string) string) string { return "" }

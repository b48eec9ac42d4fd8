//go:build signet_testhooks

package agentcmd

// cgroupRootEnv is for tests only, and exists only in a binary built with
// -tags signet_testhooks: the k8s workload attestor reads
// <dir>/<pid>/cgroup instead of /proc/<pid>/cgroup, so that a test can put
// its own process "in a container" of a pod it created (everything else
// about the process, and the PID reuse checks, still come from /proc).
const cgroupRootEnv = "SIGNET_TEST_CGROUP_ROOT"

func cgroupProcRoot(getenv func(string) string) string { return getenv(cgroupRootEnv) }

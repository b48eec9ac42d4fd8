// Package kubetest runs a real kube-apiserver and etcd on 127.0.0.1 for
// signet's Kubernetes tests: nothing on the API side is faked.
//
// Start builds (once, cached) or finds the two binaries, starts them on free
// ports with a fresh CA, serving certificate, service account signing key
// and admin client certificate, waits for /readyz, and stops both and
// removes their state when the test ends:
//
//	func TestPodToken(t *testing.T) {
//		c := kubetest.Start(t) // skipped with -short
//		node := c.CreateNode(t, "node-a", map[string]string{"zone": "a"})
//		c.CreateServiceAccount(t, "", "app")
//		pod := c.CreatePod(t, kubetest.PodParams{Name: "app-1", NodeName: node.Name, ServiceAccount: "app"})
//		token := c.PodToken(t, pod, "signet")
//		st := c.ReviewToken(t, token, "signet")
//		// st.User.Extra["authentication.kubernetes.io/node-uid"] is node.UID
//	}
//
// The cluster has no controller manager, scheduler or kubelet: a test plays
// their part (SetContainerStatuses reports containers as running,
// DeletePod deletes as a kubelet does, no "default" service account exists
// until a test creates it). ServiceAccountKubeconfig and BindClusterRole
// give a component its own least-privilege credentials, as a deployment
// would.
//
// # Binaries
//
// BuildBinaries builds k8s.io/kubernetes/cmd/kube-apiserver and etcd
// (./cmd/etcd) from this module's go.mod into the user's cache directory
// (signet-kube-bin/<key>, keyed by the Go toolchain and every module
// version), under a file lock. A cold build takes about 10 minutes on 2
// cores and 3 GB of memory, so CI runs `go -C test/kube run ./cmd/buildbins`
// before the tests; Start builds them itself if that was not done.
//
// # Caveats
//
// The API server caches a successful token authentication for 10 s (not a
// flag): a pod-bound token reviewed just before its pod is deleted is still
// accepted for up to 10 s after; one not reviewed since is refused at once.
// Tests of refusal poll with a deadline.
//
// Each Start costs about 3 s and 300 MB. Ports are picked free and then
// bound by the child processes, so another process can in principle take
// one in between; the test then fails with the process output naming it.
// Everything listens on 127.0.0.1 only. The processes are killed with the
// test binary on Linux (Pdeathsig) even when cleanups cannot run.
package kubetest

package kube

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/signet-mesh/signet/test/kube/kubetest"
)

// agentRules are what the agent needs for k8s workload attestation
// (deploy/kubernetes/rbac.yaml): the pods of its node.
var agentRules = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}},
}

// inContainer runs `signet workload fetch` against socket as if it ran in
// the container with containerID of the pod with podUID: the agent's k8s
// attestor reads the process's cgroup from cgroupRoot, where the fixture
// is written once the process's PID is known and before it may connect (a
// shell waits on a FIFO, then execs signet under the same PID). Everything
// else about the process comes from the real /proc.
func inContainer(t *testing.T, cgroupRoot, socket, podUID, containerID string, timeout time.Duration) cliResult {
	t.Helper()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "go")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", `read _ < "$0"; exec "$@"`, fifo, signetBinary(t),
		"workload", "fetch", "--socket", "unix://"+socket, "-o", "json", "--timeout", timeout.String())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pidDir := filepath.Join(cgroupRoot, strconv.Itoa(cmd.Process.Pid))
	if err := os.MkdirAll(pidDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A containerd container under the systemd cgroup driver, cgroup v2.
	line := fmt.Sprintf("0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod%s.slice/cri-containerd-%s.scope\n",
		strings.ReplaceAll(podUID, "-", "_"), containerID)
	if err := os.WriteFile(filepath.Join(pidDir, "cgroup"), []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fifo, []byte("go\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(timeout + deadline):
		cmd.Process.Kill()
		t.Fatalf("workload fetch still running after %s", timeout+deadline)
	}
	r := cliResult{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	}
	return r
}

// TestK8sWorkloadAttestation runs an agent with workload_attestors unix,k8s
// (node attested by k8s_psat, the node name read from its token, the pods
// of its node watched with its own least-privilege credentials) against a
// real API server: a process in a container of a pod on the node gets the
// entry written on the pod's namespace, service account and label, also
// when the pod's container appears in the API server only after the
// process called; a process in a container of a pod on another node gets
// nothing.
func TestK8sWorkloadAttestation(t *testing.T) {
	c := kubetest.Start(t)
	kubeconfig := serverKubeconfig(t, c)
	c.CreateNode(t, "node-a", nil)
	c.CreateNode(t, "node-b", nil)
	c.CreateServiceAccount(t, "signet", "agent")
	c.BindClusterRole(t, "signet-agent", "signet", "agent", agentRules...)
	agentKubeconfig := c.ServiceAccountKubeconfig(t, "signet", "agent")
	agentPod := c.CreatePod(t, kubetest.PodParams{Namespace: "signet", Name: "agent-1", NodeName: "node-a", ServiceAccount: "agent"})
	c.CreateServiceAccount(t, "", "web")
	web := c.CreatePod(t, kubetest.PodParams{Name: "web-1", NodeName: "node-a", ServiceAccount: "web", Labels: map[string]string{"app": "web"}})
	webID := hex64('a')
	web = c.SetContainerStatuses(t, web, map[string]string{"app": "containerd://" + webID})
	elsewhere := c.CreatePod(t, kubetest.PodParams{Name: "web-2", NodeName: "node-b", ServiceAccount: "web", Labels: map[string]string{"app": "web"}})
	elsewhereID := hex64('b')
	c.SetContainerStatuses(t, elsewhere, map[string]string{"app": "containerd://" + elsewhereID})

	s := startServer(t, fmt.Sprintf(`k8s_clusters:
  - name: prod
    kubeconfig: %s
    service_account_allow_list: ["signet:agent"]
`, kubeconfig))
	s.bundleFile(t)
	webSPIFFEID := "spiffe://" + trustDomain + "/ns/default/sa/web"
	s.cli(t, "entry", "create", "--spiffe-id", webSPIFFEID, "--parent-id", "spiffe://"+trustDomain+"/signet/cluster/prod",
		"--selector", "k8s:ns:default", "--selector", "k8s:sa:web", "--selector", "k8s:pod-label:app:web")

	dir := shortTempDir(t)
	cgroupRoot := filepath.Join(dir, "proc")
	a := &k8sAgent{dir: dir, socket: filepath.Join(dir, "agent.sock"), tokenFile: writeToken(t, dir, c.PodToken(t, agentPod, "signet"))}
	args := append(agentArgs(s, dir, "prod", a.tokenFile), "--workload-attestors", "unix,k8s", "--k8s-kubeconfig", agentKubeconfig)
	a.proc = startSignet(t, "agent", append([]string{"SIGNET_TEST_CGROUP_ROOT=" + cgroupRoot}, s.env...), args...)
	poll(t, "the agent's socket", func() error {
		if a.exited() {
			t.Fatalf("agent exited: %v\n%s", a.err, a.out.String())
		}
		_, err := os.Stat(a.socket)
		return err
	})

	poll(t, "the web pod's SVID", func() error {
		r := inContainer(t, cgroupRoot, a.socket, string(web.UID), webID, 5*time.Second)
		if r.code != 0 || !strings.Contains(r.stdout, webSPIFFEID) {
			return fmt.Errorf("exit %d: %s%s", r.code, r.stdout, r.stderr)
		}
		return nil
	})

	// A pod that has just started: its process calls before its
	// container ID reaches the API server; the agent waits for it.
	late := c.CreatePod(t, kubetest.PodParams{Name: "web-3", NodeName: "node-a", ServiceAccount: "web", Labels: map[string]string{"app": "web"}})
	lateID := hex64('c')
	got := make(chan cliResult, 1)
	go func() { got <- inContainer(t, cgroupRoot, a.socket, string(late.UID), lateID, 20*time.Second) }()
	// Give the call time to reach the agent before the status exists;
	// the outcome does not depend on it (the agent waits either way).
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	<-ctx.Done()
	cancel()
	c.SetContainerStatuses(t, late, map[string]string{"app": "containerd://" + lateID})
	if r := <-got; r.code != 0 || !strings.Contains(r.stdout, webSPIFFEID) {
		t.Errorf("process of a pod whose container appeared while it waited: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}

	// A container of a pod on another node: not in this agent's view, so
	// no k8s selectors and no SVID.
	if r := inContainer(t, cgroupRoot, a.socket, string(elsewhere.UID), elsewhereID, 3*time.Second); r.code == 0 {
		t.Errorf("process in a container of a pod on node-b got an SVID from node-a's agent:\n%s", r.stdout)
	}
}

package kube

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/test/kube/kubetest"
)

// TestAutoIdentity runs a cluster with auto_identity: with no entry at
// all, a pod on an attested node gets spiffe://<td>/ns/<namespace>/sa/<sa>
// over the Workload API; and a node that asks for the automatic identity
// of a service account none of whose pods runs on it (here one running on
// another node) is refused by the CA, which checked with the API server.
func TestAutoIdentity(t *testing.T) {
	c := kubetest.Start(t)
	kubeconfig := serverKubeconfig(t, c)
	c.CreateNode(t, "node-a", nil)
	c.CreateNode(t, "node-b", nil)
	c.CreateServiceAccount(t, "signet", "agent")
	c.BindClusterRole(t, "signet-agent", "signet", "agent", agentRules...)
	agentKubeconfig := c.ServiceAccountKubeconfig(t, "signet", "agent")
	agentPod := c.CreatePod(t, kubetest.PodParams{Namespace: "signet", Name: "agent-1", NodeName: "node-a", ServiceAccount: "agent"})
	c.CreateServiceAccount(t, "", "web")
	c.CreateServiceAccount(t, "", "db")
	web := c.CreatePod(t, kubetest.PodParams{Name: "web-1", NodeName: "node-a", ServiceAccount: "web"})
	webID := hex64('a')
	web = c.SetContainerStatuses(t, web, map[string]string{"app": "containerd://" + webID})
	db := c.CreatePod(t, kubetest.PodParams{Name: "db-1", NodeName: "node-b", ServiceAccount: "db"})
	c.SetContainerStatuses(t, db, map[string]string{"app": "containerd://" + hex64('d')})

	s := startServer(t, fmt.Sprintf(`k8s_clusters:
  - name: prod
    kubeconfig: %s
    service_account_allow_list: ["signet:agent"]
    auto_identity: true
`, kubeconfig))
	bundle := s.bundleFile(t)

	dir := shortTempDir(t)
	cgroupRoot := filepath.Join(dir, "proc")
	a := &k8sAgent{dir: dir, socket: filepath.Join(dir, "agent.sock"), tokenFile: writeToken(t, dir, c.PodToken(t, agentPod, "signet"))}
	args := append(agentArgs(s, dir, "prod", a.tokenFile), "--workload-attestors", "unix,k8s", "--k8s-kubeconfig", agentKubeconfig)
	a.proc = startSignet(t, "agent", append([]string{"SIGNET_TEST_CGROUP_ROOT=" + cgroupRoot}, s.env...), args...)

	webSPIFFEID := "spiffe://" + trustDomain + "/ns/default/sa/web"
	poll(t, "the web pod's automatic identity", func() error {
		if a.exited() {
			t.Fatalf("agent exited: %v\n%s", a.err, a.out.String())
		}
		if _, err := os.Stat(a.socket); err != nil {
			return err
		}
		r := inContainer(t, cgroupRoot, a.socket, string(web.UID), webID, 5*time.Second)
		if r.code != 0 || !strings.Contains(r.stdout, webSPIFFEID) {
			return fmt.Errorf("exit %d: %s%s", r.code, r.stdout, r.stderr)
		}
		return nil
	})
	if out := s.cli(t, "entry", "list", "-o", "json"); strings.Contains(out, webSPIFFEID) {
		t.Errorf("the automatic identity is a stored entry:\n%s", out)
	}

	// A node of the cluster (a second agent pod on node-a, as a
	// compromised node would hold) asks the CA directly.
	second := c.CreatePod(t, kubetest.PodParams{Namespace: "signet", Name: "agent-2", NodeName: "node-a", ServiceAccount: "agent"})
	rogue := newNodeClient(t, s.addr, bundle)
	rogue.attest(t, "prod", c.PodToken(t, second, "signet"))
	if r := rogue.mint(t, "auto:default:web"); r.Code != 0 || !r.SVID {
		t.Errorf("node-a minting the identity of a pod on it: %s, want an SVID", r)
	}
	r := rogue.mint(t, "auto:default:db")
	const permissionDenied = 7
	if r.Code != permissionDenied || r.SVID || !strings.Contains(r.Message, "no pod of service account default/db runs on node node-a") {
		t.Errorf("node-a minting the identity of a pod on node-b: %s, want PermissionDenied naming the pod's absence", r)
	}
	if id, err := rogue.mintJWT(t, "auto:default:web", "payments"); err != nil || id != webSPIFFEID {
		t.Errorf("node-a minting a JWT-SVID for a pod on it: %q, %v; want %s", id, err, webSPIFFEID)
	}
	if _, err := rogue.mintJWT(t, "auto:default:db", "payments"); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "no pod of service account default/db runs on node node-a") {
		t.Errorf("node-a minting a JWT-SVID for a pod on node-b: %v, want PermissionDenied naming the pod's absence", err)
	}
	for _, typ := range []string{"svid.issued", "jwt.issued"} {
		recs := s.audit(t, typ)
		last := recs[len(recs)-1]
		if last.Outcome != "failure" || last.Details["entry_id"] != "auto:default:db" || last.Subject != "spiffe://"+trustDomain+"/ns/default/sa/db" {
			t.Errorf("last %s record: %+v, want the refusal of auto:default:db", typ, last)
		}
	}
}

package kube

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/signet-mesh/signet/test/kube/kubetest"
)

// serverRules are what signet's CA needs in a cluster
// (deploy/kubernetes/k8s-psat/rbac.yaml): review tokens, get pods and
// nodes, and for automatic identities list and watch pods.
var serverRules = []rbacv1.PolicyRule{
	{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
	{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get"}},
	{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}},
}

// serverKubeconfig returns a kubeconfig for service account signet/server
// with only serverRules, as the CA's would be, once the role binding is in
// effect.
func serverKubeconfig(t *testing.T, c *kubetest.Cluster) string {
	t.Helper()
	c.CreateNamespace(t, "signet")
	c.CreateServiceAccount(t, "signet", "server")
	c.BindClusterRole(t, "signet-server", "signet", "server", serverRules...)
	path := c.ServiceAccountKubeconfig(t, "signet", "server")
	client := clientFor(t, path)
	poll(t, "the CA's role binding to take effect", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		_, err := client.CoreV1().Nodes().Get(ctx, "no-such-node", metav1.GetOptions{})
		if err != nil && strings.Contains(err.Error(), "not found") {
			return nil
		}
		if err == nil {
			return errors.New("a node that was never created exists")
		}
		return err
	})
	return path
}

// k8sAgent runs `signet agent --node-attestor k8s_psat` against s with the
// token in a file of its own.
type k8sAgent struct {
	*proc
	dir, socket, tokenFile string
}

// writeToken writes a pod's token where an agent reads it.
func writeToken(t *testing.T, dir, token string) string {
	t.Helper()
	p := filepath.Join(dir, "token")
	if err := os.WriteFile(p, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func agentArgs(s *signetServer, dir, cluster, tokenFile string) []string {
	return []string{"agent", "--server-address", s.addr, "--trust-domain", trustDomain,
		"--trust-bundle", filepath.Join(s.dir, "bundle.pem"), "--socket", filepath.Join(dir, "agent.sock"),
		"--data-dir", filepath.Join(dir, "data"), "--log-level", "debug",
		"--node-attestor", "k8s_psat", "--k8s-cluster", cluster, "--k8s-token-file", tokenFile}
}

// startK8sAgent starts an agent with token and waits for its socket.
func startK8sAgent(t *testing.T, s *signetServer, dir, cluster, token string) *k8sAgent {
	t.Helper()
	a := &k8sAgent{dir: dir, socket: filepath.Join(dir, "agent.sock"), tokenFile: writeToken(t, dir, token)}
	a.proc = startSignet(t, "agent", s.env, agentArgs(s, dir, cluster, a.tokenFile)...)
	poll(t, "the agent's socket", func() error {
		if a.exited() {
			t.Fatalf("agent exited: %v\n%s", a.err, a.out.String())
		}
		_, err := os.Stat(a.socket)
		return err
	})
	return a
}

// refusedAgent runs an agent with token and returns its output once it
// has exited, failing the test if it exited cleanly.
func refusedAgent(t *testing.T, s *signetServer, cluster, token string) string {
	t.Helper()
	dir := shortTempDir(t)
	p := startSignet(t, "refused agent", s.env, agentArgs(s, dir, cluster, writeToken(t, dir, token))...)
	if err := p.wait(t); err == nil {
		t.Fatalf("agent with a refused token exited cleanly:\n%s", p.out.String())
	}
	return p.out.String()
}

// TestK8sPSATEndToEnd runs a real signet server with k8s_clusters and real
// agents with --node-attestor k8s_psat against a real API server: an agent
// pod's token attests its node as
// spiffe://<td>/signet/agent/k8s_psat/<cluster>/<node-uid>, which then mints
// entries parented by its cluster; a second agent pod on the node attests
// the same node again; every refused token (wrong audience, service
// account not allowed, unknown cluster, deleted pod) stops the agent with
// the reason named, and is audited.
func TestK8sPSATEndToEnd(t *testing.T) {
	c := kubetest.Start(t)
	kubeconfig := serverKubeconfig(t, c)
	node := c.CreateNode(t, "node-a", map[string]string{"topology.kubernetes.io/zone": "zone-a"})
	c.CreateServiceAccount(t, "signet", "agent")
	c.CreateServiceAccount(t, "signet", "intruder")
	agentPod := c.CreatePod(t, kubetest.PodParams{Namespace: "signet", Name: "agent-1", NodeName: node.Name, ServiceAccount: "agent"})
	intruderPod := c.CreatePod(t, kubetest.PodParams{Namespace: "signet", Name: "intruder-1", NodeName: node.Name, ServiceAccount: "intruder"})

	s := startServer(t, fmt.Sprintf(`k8s_clusters:
  - name: prod
    kubeconfig: %s
    service_account_allow_list: ["signet:agent"]
`, kubeconfig))
	s.bundleFile(t)
	nodeID := fmt.Sprintf("spiffe://%s/signet/agent/k8s_psat/prod/%s", trustDomain, node.UID)
	workloadID := "spiffe://" + trustDomain + "/web"
	s.cli(t, "entry", "create", "--spiffe-id", workloadID, "--parent-id", "spiffe://"+trustDomain+"/signet/cluster/prod",
		"--selector", "unix:uid:"+strconv.Itoa(os.Getuid()))

	a := startK8sAgent(t, s, shortTempDir(t), "prod", c.PodToken(t, agentPod, "signet"))
	poll(t, "the node attested by the agent", func() error {
		if diff := cmp.Diff([]nodeRow{{SPIFFEID: nodeID, Attestor: "k8s_psat"}}, s.nodes(t)); diff != "" {
			return fmt.Errorf("nodes (-want +got):\n%s", diff)
		}
		return nil
	})
	poll(t, "the cluster-parented entry's SVID from the agent", func() error {
		r := runSignet(t, nil, "workload", "fetch", "--socket", "unix://"+a.socket, "-o", "json", "--timeout", "5s")
		if r.code != 0 {
			return errors.New(r.stderr)
		}
		if !strings.Contains(r.stdout, workloadID) {
			return fmt.Errorf("fetched %s", r.stdout)
		}
		return nil
	})
	attested := s.audit(t, "node.attested")
	if len(attested) != 1 || attested[0].Outcome != "success" {
		t.Fatalf("node.attested records: %+v, want one success", attested)
	}
	d := attested[0].Details
	for k, want := range map[string]string{
		"attestor": "k8s_psat", "cluster": "prod", "node_name": "node-a", "node_uid": string(node.UID),
		"namespace": "signet", "service_account": "agent", "pod_name": "agent-1", "pod_uid": string(agentPod.UID),
		"selectors": "k8s_psat:agent_ns:signet,k8s_psat:agent_sa:agent,k8s_psat:cluster:prod,k8s_psat:node-label:topology.kubernetes.io/zone:zone-a,k8s_psat:node-name:node-a",
	} {
		if d[k] != want {
			t.Errorf("audit detail %s = %q, want %q", k, d[k], want)
		}
	}

	// A rolling update: the agent pod is replaced by another on the same
	// node, which attests again with its own token and gets the node's
	// identity (a new incarnation).
	a.stop()
	c.DeletePod(t, agentPod)
	second := c.CreatePod(t, kubetest.PodParams{Namespace: "signet", Name: "agent-2", NodeName: node.Name, ServiceAccount: "agent"})
	secondToken := c.PodToken(t, second, "signet")
	a2 := startK8sAgent(t, s, a.dir, "prod", secondToken)
	poll(t, "the second agent pod's attestation", func() error {
		attested := s.audit(t, "node.attested")
		if last := attested[len(attested)-1]; last.Outcome != "success" || last.Details["pod_name"] != "agent-2" || last.Details["replaces"] != nodeID {
			return fmt.Errorf("last node.attested record: %+v, want agent-2 replacing %s", last, nodeID)
		}
		return nil
	})
	if diff := cmp.Diff([]nodeRow{{SPIFFEID: nodeID, Attestor: "k8s_psat"}}, s.nodes(t)); diff != "" {
		t.Errorf("nodes after the second agent pod attested (-want +got):\n%s", diff)
	}
	a2.stop()

	tests := []struct {
		name, cluster, token string
		wantErr, wantReason  string
	}{
		{name: "wrong audience", cluster: "prod", token: c.PodToken(t, second, "not-signet"),
			wantErr: "refused the token for audience", wantReason: "token_refused"},
		{name: "service account not on the allow list", cluster: "prod", token: c.PodToken(t, intruderPod, "signet"),
			wantErr: "service account signet:intruder is not on its service_account_allow_list", wantReason: "service_account_not_allowed"},
		{name: "unknown cluster", cluster: "staging", token: secondToken,
			wantErr: "is not configured on this server", wantReason: "unknown_cluster"},
		{name: "token bound to no pod", cluster: "prod", token: c.ServiceAccountToken(t, "signet", "agent", "signet"),
			wantErr: "is not bound to a pod", wantReason: "token_not_pod_bound"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := refusedAgent(t, s, tt.cluster, tt.token)
			if !strings.Contains(out, tt.wantErr) {
				t.Errorf("agent output does not say %q:\n%s", tt.wantErr, out)
			}
			recs := s.audit(t, "node.attested")
			last := recs[len(recs)-1]
			if last.Outcome != "failure" || !strings.HasPrefix(last.Details["reason"], tt.wantReason+":") || last.Details["cluster"] != tt.cluster {
				t.Errorf("last node.attested record: %+v, want a failure for %s in cluster %s", last, tt.wantReason, tt.cluster)
			}
		})
	}

	// The second pod is deleted: the API server still accepts its token
	// for a few seconds (it reviewed it just now), the CA refuses it at
	// once.
	c.DeletePod(t, second)
	out := refusedAgent(t, s, "prod", secondToken)
	if want := "pod signet/agent-2 the token is bound to no longer exists"; !strings.Contains(out, want) {
		// Only when the API server's cache has already run out does it
		// refuse the token itself.
		if !strings.Contains(out, "refused the token") {
			t.Errorf("agent with a deleted pod's token: output does not say %q:\n%s", want, out)
		}
	}
	if diff := cmp.Diff([]nodeRow{{SPIFFEID: nodeID, Attestor: "k8s_psat"}}, s.nodes(t)); diff != "" {
		t.Errorf("nodes after the refusals (-want +got):\n%s", diff)
	}
}

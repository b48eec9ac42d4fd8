package api

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-mesh/signet/ca/k8spsat"
	"github.com/signet-mesh/signet/ca/store"
)

// TestMayMint: a node mints the entries parented by itself and, for a
// Kubernetes node, by its own cluster; never another node's or another
// cluster's.
func TestMayMint(t *testing.T) {
	k8sNode := spiffeid.RequireFromString("spiffe://example.org/signet/agent/k8s_psat/prod/0b9c-uid")
	joinNode := spiffeid.RequireFromString("spiffe://example.org/signet/agent/join_token/node1")
	tests := []struct {
		name   string
		node   spiffeid.ID
		parent string
		want   bool
	}{
		{name: "k8s node, itself", node: k8sNode, parent: k8sNode.String(), want: true},
		{name: "k8s node, its cluster", node: k8sNode, parent: "spiffe://example.org/signet/cluster/prod", want: true},
		{name: "k8s node, another cluster", node: k8sNode, parent: "spiffe://example.org/signet/cluster/staging"},
		{name: "k8s node, another node", node: k8sNode, parent: joinNode.String()},
		{name: "join-token node, itself", node: joinNode, parent: joinNode.String(), want: true},
		{name: "join-token node, a cluster", node: joinNode, parent: "spiffe://example.org/signet/cluster/node1"},
		{name: "a cluster's name as a node", node: spiffeid.RequireFromString("spiffe://example.org/signet/agent/k8s_psat/prod"), parent: "spiffe://example.org/signet/cluster/prod"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mayMint(tt.node, tt.parent); got != tt.want {
				t.Errorf("mayMint(%s, %s) = %v, want %v", tt.node, tt.parent, got, tt.want)
			}
		})
	}
}

func TestAutoEntry(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	node := spiffeid.RequireFromString("spiffe://example.org/signet/agent/k8s_psat/prod/uid-a")
	e, err := autoEntry(td, node, k8spsat.AutoIdentity{Namespace: "pay", ServiceAccount: "api"})
	if err != nil {
		t.Fatal(err)
	}
	if e.ID != "auto:pay:api" || e.SPIFFEID != "spiffe://example.org/ns/pay/sa/api" || e.ParentID != node.String() {
		t.Errorf("automatic entry %+v", e)
	}
	if diff := cmp.Diff([]string{"k8s:ns:pay", "k8s:sa:api"}, e.Selectors); diff != "" {
		t.Errorf("selectors (-want +got):\n%s", diff)
	}

	for in, want := range map[string]*k8spsat.AutoIdentity{
		"auto:pay:api":             {Namespace: "pay", ServiceAccount: "api"},
		"auto:pay":                 nil,
		"auto::api":                nil,
		"auto:pay:":                nil,
		"auto:a:b:c":               nil,
		"0baccc0c-b116":            nil,
		"pay:api":                  nil,
		"auto:kube-system:coredns": {Namespace: "kube-system", ServiceAccount: "coredns"},
	} {
		got, ok := parseAutoEntryID(in)
		if (want != nil) != ok || (ok && got != *want) {
			t.Errorf("parseAutoEntryID(%q) = %+v, %v; want %+v", in, got, ok, want)
		}
	}

	n := &store.Node{Selectors: []string{"k8s_psat:agent_ns:signet", "k8s_psat:cluster:prod", "k8s_psat:node-name:node-a"}}
	if got := k8sNodeName(n); got != "node-a" {
		t.Errorf("k8sNodeName = %q, want node-a", got)
	}
}

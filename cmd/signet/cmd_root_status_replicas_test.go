package main

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

// fakeReplicaAdmin is fakeRootAdmin with nodes connected to several
// replicas.
type fakeReplicaAdmin struct {
	fakeRootAdmin
	nodes []*adminv1.Node
}

func (f *fakeReplicaAdmin) ListNodes(context.Context, *adminv1.ListNodesRequest) (*adminv1.ListNodesResponse, error) {
	return &adminv1.ListNodesResponse{Nodes: f.nodes}, nil
}

// TestRootStatusReplicas: with replicas sharing a store, root status says
// how many agents each serves and how many of them applied the current
// bundle (what the activation gate waits for); with one server of its own
// it adds nothing.
func TestRootStatusReplicas(t *testing.T) {
	tests := []struct {
		name  string
		nodes []*adminv1.Node
		want  string
	}{
		{
			name: "replicas",
			nodes: []*adminv1.Node{
				{SpiffeId: "spiffe://example.org/a", Connected: true, Replica: "ca-1", AppliedBundleRevision: 7},
				{SpiffeId: "spiffe://example.org/b", Connected: true, Replica: "ca-0", AppliedBundleRevision: 7},
				{SpiffeId: "spiffe://example.org/c", Connected: true, Replica: "ca-1", AppliedBundleRevision: 6},
				{SpiffeId: "spiffe://example.org/d", AppliedBundleRevision: 5}, // not connected
			},
			want: "replica ca-0: 1 agents connected, 1 applied bundle revision 7\nreplica ca-1: 2 agents connected, 1 applied bundle revision 7\n",
		},
		{
			name:  "one server",
			nodes: []*adminv1.Node{{SpiffeId: "spiffe://example.org/a", Connected: true, AppliedBundleRevision: 7}},
			want:  "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeReplicaAdmin{fakeRootAdmin: fakeRootAdmin{auths: []*adminv1.Authority{{Id: "r1", Kind: "root", State: "active"}}}, nodes: tt.nodes}
			env, stdout, _ := serveFakeAdmin(t, f)
			if err := run(context.Background(), env, []string{"root", "status"}); err != nil {
				t.Fatal(err)
			}
			_, got, _ := strings.Cut(stdout.String(), "root rotation: manual (root_rotation: auto lets the server take the steps)\n")
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("root status after the schedule line (-want +got):\n%s", diff)
			}
		})
	}
}

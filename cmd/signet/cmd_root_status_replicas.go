package main

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

// replicaLines are the lines of root status about the CA replicas sharing
// an etcd store: for each, how many agents are connected to it and how
// many of those applied the current bundle, which is what the activation
// gate waits for. None with one server of its own (no agent names a
// replica), or a server without ListNodes.
func replicaLines(ctx context.Context, a *adminOptions, bundleRevision int64) ([]string, error) {
	client, closeFn, err := a.dial()
	if err != nil {
		return nil, err
	}
	defer closeFn()
	ctx, cancel := context.WithTimeout(ctx, adminCallTimeout)
	defer cancel()
	resp, err := client.ListNodes(ctx, &adminv1.ListNodesRequest{})
	if status.Code(err) == codes.Unimplemented {
		return nil, nil
	}
	if err != nil {
		return nil, a.rpcError(err)
	}
	type count struct{ agents, applied int }
	by := map[string]*count{}
	named := false
	for _, n := range resp.Nodes {
		if !n.Connected {
			continue
		}
		named = named || n.Replica != ""
		c := by[n.Replica]
		if c == nil {
			c = &count{}
			by[n.Replica] = c
		}
		c.agents++
		if n.AppliedBundleRevision >= bundleRevision {
			c.applied++
		}
	}
	if !named {
		return nil, nil
	}
	var lines []string
	for _, name := range slices.Sorted(maps.Keys(by)) {
		c := by[name]
		lines = append(lines, fmt.Sprintf("replica %s: %d agents connected, %d applied bundle revision %d", name, c.agents, c.applied, bundleRevision))
	}
	return lines, nil
}

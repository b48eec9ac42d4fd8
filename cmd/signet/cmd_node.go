package main

import (
	"context"
	"fmt"
	"strconv"

	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

func nodeCommand() *command {
	return &command{name: "node", summary: "attested agents", sub: []*command{
		{name: "list", summary: "list attested agents", run: runNodeList},
		{name: "evict", summary: "evict an agent: it must attest again with a new token", run: runNodeEvict},
	}}
}

// nodeJSON is the -o json shape of a node (a contract).
type nodeJSON struct {
	SPIFFEID              string `json:"spiffe_id"`
	Attestor              string `json:"attestor"`
	Serial                string `json:"serial"`
	AttestedAt            string `json:"attested_at"`
	ExpiresAt             string `json:"expires_at"`
	Connected             bool   `json:"connected"`
	AppliedBundleRevision int64  `json:"applied_bundle_revision"`
}

func runNodeList(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "node list", "signet node list [-o json]")
	var af adminFlags
	af.register(fs, env)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := exactArgs(fs, pos); err != nil {
		return err
	}
	if err := af.validate(); err != nil {
		return err
	}
	resp, err := adminCall(ctx, &af, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.ListNodesResponse, error) {
		return c.ListNodes(ctx, &adminv1.ListNodesRequest{})
	})
	if err != nil {
		return err
	}
	out := make([]nodeJSON, 0, len(resp.Nodes))
	rows := make([][]string, 0, len(resp.Nodes))
	for _, n := range resp.Nodes {
		j := nodeJSON{
			SPIFFEID: n.SpiffeId, Attestor: n.Attestor, Serial: n.Serial,
			AttestedAt: unixTime(n.AttestedAt), ExpiresAt: unixTime(n.ExpiresAt),
			Connected: n.Connected, AppliedBundleRevision: n.AppliedBundleRevision,
		}
		out = append(out, j)
		rows = append(rows, []string{j.SPIFFEID, j.Attestor, strconv.FormatBool(j.Connected), j.ExpiresAt, j.Serial})
	}
	if af.output == "json" {
		return printJSON(env.stdout, out)
	}
	return printTable(env.stdout, []string{"SPIFFE ID", "ATTESTOR", "CONNECTED", "SVID EXPIRES", "SERIAL"}, rows)
}

func runNodeEvict(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "node evict", "signet node evict SPIFFE_ID")
	var af adminFlags
	af.register(fs, env)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := exactArgs(fs, pos, "SPIFFE_ID"); err != nil {
		return err
	}
	if _, err := adminCall(ctx, &af, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.EvictNodeResponse, error) {
		return c.EvictNode(ctx, &adminv1.EvictNodeRequest{SpiffeId: pos[0]})
	}); err != nil {
		return err
	}
	fmt.Fprintf(env.stderr, "evicted node %s\n", pos[0])
	return nil
}

package main

import (
	"context"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/signet-mesh/signet/cmd/internal/cli"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

// nodeJSON is the -o json shape of a node (a contract).
type nodeJSON struct {
	SPIFFEID              string `json:"spiffe_id"`
	Attestor              string `json:"attestor"`
	Serial                string `json:"serial"`
	AttestedAt            string `json:"attested_at"`
	ExpiresAt             string `json:"expires_at"`
	Connected             bool   `json:"connected"`
	AppliedBundleRevision int64  `json:"applied_bundle_revision"`
	// EvictedAt is set only for an evicted node (--include-evicted).
	EvictedAt string `json:"evicted_at,omitempty"`
	// Replica is the CA replica the agent is connected to (etcd store).
	Replica string `json:"replica,omitempty"`
}

type nodeListOptions struct {
	admin          adminOptions
	output         outputOption
	includeEvicted bool
	page           pageOptions
}

func newNodeListCommand(env *cliEnv) *cobra.Command {
	var o nodeListOptions
	cmd := &cobra.Command{
		Use:   "list",
		Short: "list attested agents, connected or not",
		Example: `  signet node list
  signet node list -o json
  signet node list --include-evicted   # evicted nodes too, with when`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context(), env) },
	}
	cmd.Flags().BoolVar(&o.includeEvicted, "include-evicted", false, "also list evicted nodes (their tombstones), with the time of eviction")
	o.admin.addFlags(cmd.Flags(), env)
	o.output.addFlags(cmd, listFormats)
	o.page.addFlags(cmd.Flags())
	return cmd
}

func (o *nodeListOptions) run(ctx context.Context, env *cliEnv) error {
	resp, err := adminPages(ctx, &o.admin, func(ctx context.Context, c adminv1.AdminServiceClient, token string) (*adminv1.ListNodesResponse, error) {
		return c.ListNodes(ctx, &adminv1.ListNodesRequest{IncludeEvicted: o.includeEvicted, PageSize: o.page.size, PageToken: token})
	}, func(all, page *adminv1.ListNodesResponse) { all.Nodes = append(all.Nodes, page.Nodes...) })
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
		if n.EvictedAt != 0 {
			j.EvictedAt = unixTime(n.EvictedAt)
		}
		j.Replica = n.Replica
		out = append(out, j)
		row := []string{j.SPIFFEID, j.Attestor, strconv.FormatBool(j.Connected), j.ExpiresAt, j.Serial}
		if o.includeEvicted {
			row = append(row, j.EvictedAt)
		}
		rows = append(rows, row)
	}
	header := []string{"SPIFFE ID", "ATTESTOR", "CONNECTED", "SVID EXPIRES", "SERIAL"}
	if o.includeEvicted {
		header = append(header, "EVICTED")
	}
	return o.output.printList(env.stdout, out, header, rows)
}

package main

import (
	"context"
	"strconv"

	"github.com/spf13/cobra"

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
}

type nodeListOptions struct {
	admin  adminOptions
	output outputOption
	page   pageOptions
}

func newNodeListCommand(env *cliEnv) *cobra.Command {
	var o nodeListOptions
	cmd := &cobra.Command{
		Use:   "list",
		Short: "list attested agents, connected or not",
		Example: `  signet node list
  signet node list -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context(), env) },
	}
	o.admin.addFlags(cmd.Flags(), env)
	o.output.addFlags(cmd, listFormats)
	o.page.addFlags(cmd.Flags())
	return cmd
}

func (o *nodeListOptions) run(ctx context.Context, env *cliEnv) error {
	resp, err := adminPages(ctx, &o.admin, func(ctx context.Context, c adminv1.AdminServiceClient, token string) (*adminv1.ListNodesResponse, error) {
		return c.ListNodes(ctx, &adminv1.ListNodesRequest{PageSize: o.page.size, PageToken: token})
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
		out = append(out, j)
		rows = append(rows, []string{j.SPIFFEID, j.Attestor, strconv.FormatBool(j.Connected), j.ExpiresAt, j.Serial})
	}
	return o.output.printList(env.stdout, out, []string{"SPIFFE ID", "ATTESTOR", "CONNECTED", "SVID EXPIRES", "SERIAL"}, rows)
}

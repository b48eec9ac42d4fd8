package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/signet-mesh/signet/cmd/internal/cli"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

// svidJSON is the -o json shape of an issued SVID (a contract); -o csv has
// the same columns.
type svidJSON struct {
	Serial      string `json:"serial"`
	SPIFFEID    string `json:"spiffe_id"`
	NodeID      string `json:"node_id"`
	EntryID     string `json:"entry_id,omitempty"`
	NotBefore   string `json:"not_before"`
	ExpiresAt   string `json:"expires_at"`
	AuthorityID string `json:"authority_id"`
}

type svidListOptions struct {
	admin    adminOptions
	output   outputOption
	page     pageOptions
	valid    bool
	spiffeID string
}

func newSVIDListCommand(env *cliEnv) *cobra.Command {
	var o svidListOptions
	cmd := &cobra.Command{
		Use:   "list",
		Short: "list issued SVIDs (serial, SPIFFE ID, node, expiry)",
		Example: `  signet svid list
  signet svid list --valid -o csv                  # the inventory of certificates valid now
  signet svid list --spiffe-id spiffe://example.org/web -o json`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context(), env) },
	}
	o.admin.addFlags(cmd.Flags(), env)
	o.output.addFlags(cmd, listFormats)
	o.page.addFlags(cmd.Flags())
	cmd.Flags().BoolVar(&o.valid, "valid", false, "only certificates valid now (the inventory)")
	cmd.Flags().StringVar(&o.spiffeID, "spiffe-id", "", "only certificates for this SPIFFE ID")
	return cmd
}

func (o *svidListOptions) run(ctx context.Context, env *cliEnv) error {
	resp, err := adminPages(ctx, &o.admin, func(ctx context.Context, c adminv1.AdminServiceClient, token string) (*adminv1.ListSVIDsResponse, error) {
		return c.ListSVIDs(ctx, &adminv1.ListSVIDsRequest{Valid: o.valid, SpiffeId: o.spiffeID, PageSize: o.page.size, PageToken: token})
	}, func(all, page *adminv1.ListSVIDsResponse) { all.Svids = append(all.Svids, page.Svids...) })
	if err != nil {
		return err
	}
	out := make([]svidJSON, 0, len(resp.Svids))
	rows := make([][]string, 0, len(resp.Svids))
	for _, s := range resp.Svids {
		j := svidJSON{Serial: s.Serial, SPIFFEID: s.SpiffeId, NodeID: s.NodeId, EntryID: s.EntryId,
			NotBefore: unixTime(s.NotBefore), ExpiresAt: unixTime(s.ExpiresAt), AuthorityID: s.AuthorityId}
		out = append(out, j)
		rows = append(rows, []string{j.Serial, j.SPIFFEID, j.NodeID, j.ExpiresAt})
	}
	return o.output.printList(env.stdout, out, []string{"SERIAL", "SPIFFE ID", "NODE", "EXPIRES"}, rows)
}

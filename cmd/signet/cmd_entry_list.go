package main

import (
	"context"
	"strings"

	"github.com/spf13/cobra"

	"github.com/signet-mesh/signet/cmd/internal/cli"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

type entryListOptions struct {
	admin              adminOptions
	output             outputOption
	page               pageOptions
	spiffeID, parentID string
}

func newEntryListCommand(env *cliEnv) *cobra.Command {
	var o entryListOptions
	cmd := &cobra.Command{
		Use:   "list",
		Short: "list entries",
		Example: `  signet entry list
  signet entry list --parent-id spiffe://example.org/signet/agent/join_token/node1 -o json
  signet entry list -o csv > entries.csv`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context(), env) },
	}
	o.admin.addFlags(cmd.Flags(), env)
	o.output.addFlags(cmd, listFormats)
	o.page.addFlags(cmd.Flags())
	cmd.Flags().StringVar(&o.spiffeID, "spiffe-id", "", "only entries with this SPIFFE ID")
	cmd.Flags().StringVar(&o.parentID, "parent-id", "", "only entries of this agent")
	return cmd
}

func (o *entryListOptions) run(ctx context.Context, env *cliEnv) error {
	resp, err := adminPages(ctx, &o.admin, func(ctx context.Context, c adminv1.AdminServiceClient, token string) (*adminv1.ListEntriesResponse, error) {
		return c.ListEntries(ctx, &adminv1.ListEntriesRequest{SpiffeId: o.spiffeID, ParentId: o.parentID, PageSize: o.page.size, PageToken: token})
	}, func(all, page *adminv1.ListEntriesResponse) { all.Entries = append(all.Entries, page.Entries...) })
	if err != nil {
		return err
	}
	out := make([]entryJSON, 0, len(resp.Entries))
	rows := make([][]string, 0, len(resp.Entries))
	for _, e := range resp.Entries {
		j := entryToJSON(e)
		out = append(out, j)
		rows = append(rows, []string{j.ID, j.SPIFFEID, j.ParentID, strings.Join(j.Selectors, ","), j.X509TTL})
	}
	return o.output.printList(env.stdout, out, []string{"ID", "SPIFFE ID", "PARENT ID", "SELECTORS", "X509 TTL"}, rows)
}

package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/signet-mesh/signet/cmd/internal/cli"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

type mtlsListOptions struct {
	admin  adminOptions
	output outputOption
	page   pageOptions
}

func newMTLSListCommand(env *cliEnv) *cobra.Command {
	var o mtlsListOptions
	cmd := &cobra.Command{
		Use:   "list",
		Short: "list mTLS policies",
		Example: `  signet mtls list
  signet mtls list -o json`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context(), env) },
	}
	o.admin.addFlags(cmd.Flags(), env)
	o.output.addFlags(cmd, listFormats)
	o.page.addFlags(cmd.Flags())
	return cmd
}

func (o *mtlsListOptions) run(ctx context.Context, env *cliEnv) error {
	resp, err := adminPages(ctx, &o.admin, func(ctx context.Context, c adminv1.AdminServiceClient, token string) (*adminv1.ListMTLSPoliciesResponse, error) {
		return c.ListMTLSPolicies(ctx, &adminv1.ListMTLSPoliciesRequest{PageSize: o.page.size, PageToken: token})
	}, func(all, page *adminv1.ListMTLSPoliciesResponse) {
		all.Policies = append(all.Policies, page.Policies...)
	})
	if err != nil {
		return err
	}
	out := make([]mtlsPolicyJSON, 0, len(resp.Policies))
	rows := make([][]string, 0, len(resp.Policies))
	for _, p := range resp.Policies {
		j := policyToJSON(p)
		out = append(out, j)
		rows = append(rows, policyRow(j))
	}
	if len(rows) == 0 && o.output.format == outputTable {
		fmt.Fprintln(env.stderr, "no mTLS policies: every workload is PERMISSIVE")
	}
	return o.output.printList(env.stdout, out, policyHeader, rows)
}

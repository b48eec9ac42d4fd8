package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/signet-mesh/signet/cmd/internal/cli"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

type tokenListOptions struct {
	admin  adminOptions
	output outputOption
	page   pageOptions
}

func newTokenListCommand(env *cliEnv) *cobra.Command {
	var o tokenListOptions
	cmd := &cobra.Command{
		Use:   "list",
		Short: "list unused, unexpired join tokens (never their secrets)",
		Example: `  signet token list
  signet token list -o json`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context(), env) },
	}
	o.admin.addFlags(cmd.Flags(), env)
	o.output.addFlags(cmd, listFormats)
	o.page.addFlags(cmd.Flags())
	return cmd
}

func (o *tokenListOptions) run(ctx context.Context, env *cliEnv) error {
	resp, err := adminPages(ctx, &o.admin, func(ctx context.Context, c adminv1.AdminServiceClient, token string) (*adminv1.ListJoinTokensResponse, error) {
		return c.ListJoinTokens(ctx, &adminv1.ListJoinTokensRequest{PageSize: o.page.size, PageToken: token})
	}, func(all, page *adminv1.ListJoinTokensResponse) { all.Tokens = append(all.Tokens, page.Tokens...) })
	if err != nil {
		return err
	}
	out := make([]joinTokenJSON, 0, len(resp.Tokens))
	rows := make([][]string, 0, len(resp.Tokens))
	for _, t := range resp.Tokens {
		j := joinTokenToJSON(t)
		out = append(out, j)
		rows = append(rows, []string{j.ID, orDash(j.NodeName), j.SPIFFEID, j.ExpiresAt})
	}
	return o.output.printList(env.stdout, out, []string{"ID", "NODE NAME", "SPIFFE ID", "EXPIRES"}, rows)
}

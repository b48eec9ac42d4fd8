package main

import (
	"context"

	"github.com/spf13/cobra"

	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

type entryShowOptions struct {
	admin  adminOptions
	output outputOption
}

func newEntryShowCommand(env *cliEnv) *cobra.Command {
	var o entryShowOptions
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "show one entry",
		Example: `  signet entry show 6b1f0c2e
  signet entry show 6b1f0c2e -o json`,
		Args: exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(cmd.Context(), env, args[0]) },
	}
	o.admin.addFlags(cmd.Flags(), env)
	o.output.addFlags(cmd, objectFormats)
	return cmd
}

func (o *entryShowOptions) run(ctx context.Context, env *cliEnv, id string) error {
	resp, err := adminCall(ctx, &o.admin, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.GetEntryResponse, error) {
		return c.GetEntry(ctx, &adminv1.GetEntryRequest{Id: id})
	})
	if err != nil {
		return err
	}
	return printEntry(env.stdout, o.output, resp.Entry)
}

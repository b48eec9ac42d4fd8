package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

type entryDeleteOptions struct {
	admin adminOptions
}

func newEntryDeleteCommand(env *cliEnv) *cobra.Command {
	var o entryDeleteOptions
	cmd := &cobra.Command{
		Use:     "delete ID",
		Short:   "delete an entry: agents stop serving its SVIDs",
		Example: `  signet entry delete 6b1f0c2e`,
		Args:    exactArgs("ID"),
		RunE:    func(cmd *cobra.Command, args []string) error { return o.run(cmd.Context(), env, args[0]) },
	}
	o.admin.addFlags(cmd.Flags(), env)
	return cmd
}

func (o *entryDeleteOptions) run(ctx context.Context, env *cliEnv, id string) error {
	if _, err := adminCall(ctx, &o.admin, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.DeleteEntryResponse, error) {
		return c.DeleteEntry(ctx, &adminv1.DeleteEntryRequest{Id: id})
	}); err != nil {
		return err
	}
	fmt.Fprintf(env.stderr, "deleted entry %s\n", id)
	return nil
}

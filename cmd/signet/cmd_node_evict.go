package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

type nodeEvictOptions struct {
	admin adminOptions
}

func newNodeEvictCommand(env *cliEnv) *cobra.Command {
	var o nodeEvictOptions
	cmd := &cobra.Command{
		Use:   "evict SPIFFE_ID",
		Short: "evict an agent: it must attest again with a new token",
		Example: `  signet node evict spiffe://example.org/signet/agent/join_token/node1
  signet token create --node-name node1     # then restart its agent with the new token`,
		Args: exactArgs("SPIFFE_ID"),
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(cmd.Context(), env, args[0]) },
	}
	o.admin.addFlags(cmd.Flags(), env)
	return cmd
}

func (o *nodeEvictOptions) run(ctx context.Context, env *cliEnv, id string) error {
	if _, err := adminCall(ctx, &o.admin, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.EvictNodeResponse, error) {
		return c.EvictNode(ctx, &adminv1.EvictNodeRequest{SpiffeId: id})
	}); err != nil {
		return err
	}
	fmt.Fprintf(env.stderr, "evicted node %s\n", id)
	return nil
}

package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

type rootRetireOptions struct {
	admin  adminOptions
	output outputOption
	force  bool
}

func newRootRetireCommand(env *cliEnv) *cobra.Command {
	var o rootRetireOptions
	cmd := &cobra.Command{
		Use:   "retire [ID]",
		Short: "take the retiring root out of the trust bundle",
		Example: `  signet root retire
  signet root retire --force      # even though current SVIDs still chain to it`,
		Args: optionalArg("authority ID"),
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(cmd.Context(), env, firstArg(args)) },
	}
	o.admin.addFlags(cmd.Flags(), env)
	o.output.addFlags(cmd, objectFormats)
	cmd.Flags().BoolVar(&o.force, "force", false, "retire even though current SVIDs still chain to the root (audited); they stop being trusted")
	return cmd
}

func (o *rootRetireOptions) run(ctx context.Context, env *cliEnv, id string) error {
	resp, err := adminCall(ctx, &o.admin, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.RetireRootResponse, error) {
		return c.RetireRoot(ctx, &adminv1.RetireRootRequest{Id: id, Force: o.force})
	})
	if err != nil {
		return err
	}
	j := authorityToJSON(resp.Authority)
	if o.output.json() {
		return printJSON(env.stdout, j)
	}
	fmt.Fprintln(env.stdout, j.ID)
	fmt.Fprintf(env.stderr, "retired root %s: it has left the trust bundle\n", j.ID)
	return nil
}

package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

type rootActivateOptions struct {
	admin            adminOptions
	output           outputOption
	force, rotateNow bool
}

func newRootActivateCommand(env *cliEnv) *cobra.Command {
	var o rootActivateOptions
	cmd := &cobra.Command{
		Use:   "activate [ID]",
		Short: "make the prepared root sign (through a new intermediate); the active one starts retiring",
		Example: `  signet root activate                 # the prepared root
  signet root activate 4c1d... --rotate-now
  signet root activate --force         # even though some agents lack the new bundle`,
		Args: optionalArg("authority ID"),
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(cmd.Context(), env, firstArg(args)) },
	}
	o.admin.addFlags(cmd.Flags(), env)
	o.output.addFlags(cmd, objectFormats)
	cmd.Flags().BoolVar(&o.force, "force", false, "activate even though some connected agents have not applied the bundle holding the root (audited)")
	cmd.Flags().BoolVar(&o.rotateNow, "rotate-now", false, "make agents re-mint every SVID now, spread over the time the CA needs to mint them on all its cores, instead of at their half-life")
	return cmd
}

func (o *rootActivateOptions) run(ctx context.Context, env *cliEnv, id string) error {
	resp, err := adminCall(ctx, &o.admin, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.ActivateRootResponse, error) {
		return c.ActivateRoot(ctx, &adminv1.ActivateRootRequest{Id: id, Force: o.force, RotateNow: o.rotateNow})
	})
	if err != nil {
		return err
	}
	j := authorityToJSON(resp.Authority)
	if o.output.json() {
		return printJSON(env.stdout, j)
	}
	fmt.Fprintln(env.stdout, j.ID)
	how := "SVIDs move to it at their normal half-life"
	if o.rotateNow {
		how = "agents are re-minting every SVID now"
	}
	fmt.Fprintf(env.stderr, "activated root %s: new SVIDs chain to it and %s; the previous root is retiring.\nOnce no current SVID chains to the old root, run: signet root retire\n", j.ID, how)
	return nil
}

// firstArg returns the optional positional argument, or "".
func firstArg(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[0]
}

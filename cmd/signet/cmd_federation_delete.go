package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

type federationDeleteOptions struct {
	admin  adminOptions
	output outputOption
}

func newFederationDeleteCommand(env *cliEnv) *cobra.Command {
	var o federationDeleteOptions
	cmd := &cobra.Command{
		Use:     "delete TRUST_DOMAIN",
		Short:   "stop federating with a trust domain: agents drop its roots",
		Example: `  signet federation delete other.org`,
		Args:    exactArgs("TRUST_DOMAIN"),
		RunE:    func(cmd *cobra.Command, args []string) error { return o.run(cmd.Context(), env, args[0]) },
	}
	o.admin.addFlags(cmd.Flags(), env)
	o.output.addFlags(cmd, objectFormats)
	return cmd
}

func (o *federationDeleteOptions) run(ctx context.Context, env *cliEnv, td string) error {
	if _, err := federationCall(ctx, &o.admin, func(ctx context.Context, c adminv1.FederationServiceClient) (*adminv1.DeleteFederationResponse, error) {
		return c.DeleteFederation(ctx, &adminv1.DeleteFederationRequest{TrustDomain: td})
	}); err != nil {
		return err
	}
	if o.output.json() {
		return printJSON(env.stdout, map[string]any{"trust_domain": td, "deleted": true})
	}
	fmt.Fprintf(env.stderr, "stopped federating with %s\n", td)
	return nil
}

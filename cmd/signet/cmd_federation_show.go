package main

import (
	"context"

	"github.com/spf13/cobra"

	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

type federationShowOptions struct {
	admin  adminOptions
	output outputOption
}

func newFederationShowCommand(env *cliEnv) *cobra.Command {
	var o federationShowOptions
	cmd := &cobra.Command{
		Use:   "show TRUST_DOMAIN",
		Short: "show a federated trust domain, its last good bundle and its refresh state",
		Example: `  signet federation show other.org
  signet federation show other.org -o json   # includes the bundle (SPIFFE bundle JSON)`,
		Args: exactArgs("TRUST_DOMAIN"),
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(cmd.Context(), env, args[0]) },
	}
	o.admin.addFlags(cmd.Flags(), env)
	o.output.addFlags(cmd, objectFormats)
	return cmd
}

func (o *federationShowOptions) run(ctx context.Context, env *cliEnv, td string) error {
	resp, err := federationCall(ctx, &o.admin, func(ctx context.Context, c adminv1.FederationServiceClient) (*adminv1.GetFederationResponse, error) {
		return c.GetFederation(ctx, &adminv1.GetFederationRequest{TrustDomain: td})
	})
	if err != nil {
		return err
	}
	return printFederation(env.stdout, o.output, resp.Relationship)
}

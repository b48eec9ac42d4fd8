package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

type federationRefreshOptions struct {
	admin  adminOptions
	output outputOption
}

func newFederationRefreshCommand(env *cliEnv) *cobra.Command {
	var o federationRefreshOptions
	cmd := &cobra.Command{
		Use:   "refresh TRUST_DOMAIN",
		Short: "fetch a federated trust domain's bundle now",
		Long: `Fetch the bundle now instead of waiting for its refresh hint. A refused
bundle (wrong endpoint SPIFFE ID, another trust domain, spiffe_sequence
going back, malformed) or an unreachable endpoint fails with the reason;
the last good bundle is kept either way.`,
		Example: `  signet federation refresh other.org
  signet federation refresh other.org -o json`,
		Args: exactArgs("TRUST_DOMAIN"),
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(cmd.Context(), env, args[0]) },
	}
	o.admin.addFlags(cmd.Flags(), env)
	o.output.addFlags(cmd, objectFormats)
	return cmd
}

// federationRefreshJSON is `federation refresh -o json`.
type federationRefreshJSON struct {
	federationJSON
	Updated bool `json:"updated"`
}

func (o *federationRefreshOptions) run(ctx context.Context, env *cliEnv, td string) error {
	resp, err := federationCall(ctx, &o.admin, func(ctx context.Context, c adminv1.FederationServiceClient) (*adminv1.RefreshFederationResponse, error) {
		return c.RefreshFederation(ctx, &adminv1.RefreshFederationRequest{TrustDomain: td})
	})
	if err != nil {
		return err
	}
	if o.output.json() {
		return printJSON(env.stdout, federationRefreshJSON{federationJSON: federationToJSON(resp.Relationship), Updated: resp.Updated})
	}
	if resp.Updated {
		fmt.Fprintf(env.stdout, "%s: bundle updated to sequence %d (%d roots)\n", td, resp.Relationship.Sequence, resp.Relationship.X509Authorities)
	} else {
		fmt.Fprintf(env.stdout, "%s: bundle unchanged (sequence %d)\n", td, resp.Relationship.Sequence)
	}
	return nil
}

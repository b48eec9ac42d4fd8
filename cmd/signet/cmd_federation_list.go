package main

import (
	"context"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/signet-mesh/signet/cmd/internal/cli"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

type federationListOptions struct {
	admin  adminOptions
	output outputOption
}

func newFederationListCommand(env *cliEnv) *cobra.Command {
	var o federationListOptions
	cmd := &cobra.Command{
		Use:   "list",
		Short: "list the federated trust domains and the state of their bundles",
		Example: `  signet federation list
  signet federation list -o json`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context(), env) },
	}
	o.admin.addFlags(cmd.Flags(), env)
	o.output.addFlags(cmd, listFormats)
	return cmd
}

func (o *federationListOptions) run(ctx context.Context, env *cliEnv) error {
	resp, err := federationCall(ctx, &o.admin, func(ctx context.Context, c adminv1.FederationServiceClient) (*adminv1.ListFederationsResponse, error) {
		return c.ListFederations(ctx, &adminv1.ListFederationsRequest{})
	})
	if err != nil {
		return err
	}
	out := make([]federationJSON, 0, len(resp.Relationships))
	rows := make([][]string, 0, len(resp.Relationships))
	for _, r := range resp.Relationships {
		j := federationToJSON(r)
		out = append(out, j)
		state := "ok"
		if j.LastError != "" {
			state = "failing"
		}
		rows = append(rows, []string{j.TrustDomain, j.Profile, j.BundleEndpointURL, strconv.FormatUint(j.Sequence, 10), strconv.Itoa(int(j.X509Authorities)), j.LastRefresh, state})
	}
	return o.output.printList(env.stdout, out, []string{"TRUST DOMAIN", "PROFILE", "ENDPOINT", "SEQUENCE", "ROOTS", "LAST REFRESH", "STATE"}, rows)
}

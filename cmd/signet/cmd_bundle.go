package main

import (
	"context"
	"encoding/pem"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/signet-mesh/signet/cmd/internal/cli"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

func newBundleCommand(env *cliEnv) *cobra.Command {
	return newGroupCommand("bundle", "the trust bundle", `  signet bundle show > bundle.pem`,
		newBundleShowCommand(env),
	)
}

type bundleShowOptions struct {
	admin  adminOptions
	format string
}

var bundleFormats = []string{"pem", "spiffe"}

func newBundleShowCommand(env *cliEnv) *cobra.Command {
	var o bundleShowOptions
	cmd := &cobra.Command{
		Use:   "show",
		Short: "print the trust bundle as PEM or a SPIFFE bundle (JWKS)",
		Example: `  signet bundle show > bundle.pem            # the roots, for agents' --trust-bundle
  signet bundle show --format spiffe         # X.509 roots and JWT keys as a SPIFFE bundle`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context(), env) },
	}
	o.admin.addFlags(cmd.Flags(), env)
	cmd.Flags().Var(newChoiceValue(&o.format, "pem", bundleFormats, "--format"), "format", "pem (root certificates) or spiffe (SPIFFE bundle JWKS)")
	cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions(bundleFormats, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func (o *bundleShowOptions) run(ctx context.Context, env *cliEnv) error {
	resp, err := adminCall(ctx, &o.admin, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.GetBundleResponse, error) {
		return c.GetBundle(ctx, &adminv1.GetBundleRequest{})
	})
	if err != nil {
		return err
	}
	if o.format == "spiffe" {
		_, err := fmt.Fprintln(env.stdout, string(resp.SpiffeBundle))
		return err
	}
	for _, der := range resp.X509Authorities {
		if err := pem.Encode(env.stdout, &pem.Block{Type: "CERTIFICATE", Bytes: der}); err != nil {
			return err
		}
	}
	return nil
}

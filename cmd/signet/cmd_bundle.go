package main

import (
	"context"
	"encoding/pem"
	"fmt"

	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

func bundleCommand() *command {
	return &command{name: "bundle", summary: "the trust bundle", sub: []*command{
		{name: "show", summary: "print the trust bundle as PEM or a SPIFFE bundle (JWKS)", run: runBundleShow},
	}}
}

func runBundleShow(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "bundle show", "signet bundle show [--format pem|spiffe]")
	var af adminFlags
	af.register(fs, env)
	format := fs.String("format", "pem", "pem (root certificates) or spiffe (SPIFFE bundle JWKS)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := exactArgs(fs, pos); err != nil {
		return err
	}
	if *format != "pem" && *format != "spiffe" {
		return fmt.Errorf("unknown --format %q: use pem or spiffe", *format)
	}
	resp, err := adminCall(ctx, &af, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.GetBundleResponse, error) {
		return c.GetBundle(ctx, &adminv1.GetBundleRequest{})
	})
	if err != nil {
		return err
	}
	if *format == "spiffe" {
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

package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/signet-mesh/signet/cmd/internal/cli"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

type rootPrepareOptions struct {
	admin                                      adminOptions
	output                                     outputOption
	fromFile, keyFile, chain, csrKeyID, csrOut string
}

func (o *rootPrepareOptions) addFlags(cmd *cobra.Command, env *cliEnv) {
	fs := cmd.Flags()
	o.admin.addFlags(fs, env)
	o.output.addFlags(cmd, objectFormats)
	fs.StringVar(&o.fromFile, "from-file", "", "import this CA certificate (PEM) instead of creating a root: self-signed with --key, or issued by your PKI with --chain")
	fs.StringVar(&o.keyFile, "key", "", "private key (PEM, unencrypted) of --from-file; omit for a certificate issued for a --csr-out CSR")
	fs.StringVar(&o.chain, "chain", "", "PEM certificates above --from-file, up to the root(s) that join the trust bundle")
	fs.StringVar(&o.csrKeyID, "csr-key-id", "", "key ID printed by --csr-out (default: the waiting CSR whose key matches)")
	fs.StringVar(&o.csrOut, "csr-out", "", "write a CSR for a new key to this file, for an upstream CA to sign as signet's new root, then import the result with --from-file")
}

func newRootPrepareCommand(env *cliEnv) *cobra.Command {
	var o rootPrepareOptions
	cmd := &cobra.Command{
		Use:   "prepare",
		Short: "create (or import) a new root; it joins the trust bundle at once",
		Example: `  signet root prepare
  signet root prepare --from-file root.pem --key root.key          # bring your own root
  signet root prepare --csr-out inter.csr                           # have an upstream CA sign it,
  signet root prepare --from-file inter.pem --chain upstream.pem    # then import the result`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context(), env) },
	}
	o.addFlags(cmd, env)
	return cmd
}

func (o *rootPrepareOptions) run(ctx context.Context, env *cliEnv) error {
	req := &adminv1.PrepareRootRequest{CsrKeyId: o.csrKeyID}
	switch {
	case o.csrOut != "":
		if o.fromFile != "" || o.keyFile != "" || o.chain != "" || o.csrKeyID != "" {
			return errors.New("--csr-out makes a new key: it cannot be combined with --from-file, --key, --chain or --csr-key-id")
		}
		req.CsrOnly = true
	case o.fromFile != "":
		var err error
		if req.CertPem, err = os.ReadFile(o.fromFile); err != nil {
			return fmt.Errorf("--from-file: %w", err)
		}
		if o.keyFile != "" {
			if req.KeyPem, err = os.ReadFile(o.keyFile); err != nil {
				return fmt.Errorf("--key: %w", err)
			}
		}
		if o.chain != "" {
			if req.ChainPem, err = os.ReadFile(o.chain); err != nil {
				return fmt.Errorf("--chain: %w", err)
			}
		}
	case o.keyFile != "" || o.chain != "" || o.csrKeyID != "":
		return errors.New("--key, --chain and --csr-key-id go with --from-file")
	}
	resp, err := adminCall(ctx, &o.admin, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.PrepareRootResponse, error) {
		return c.PrepareRoot(ctx, req)
	})
	if err != nil {
		return err
	}
	if req.CsrOnly {
		if err := os.WriteFile(o.csrOut, resp.CsrPem, 0o644); err != nil {
			return fmt.Errorf("writing CSR (key ID %s): %w", resp.CsrKeyId, err)
		}
		if o.output.json() {
			return printJSON(env.stdout, map[string]string{"csr_key_id": resp.CsrKeyId, "csr_file": o.csrOut})
		}
		fmt.Fprintln(env.stdout, resp.CsrKeyId)
		fmt.Fprintf(env.stderr, "wrote CSR to %s (key ID %s); have your CA sign it as a CA certificate, then run\n  signet root prepare --from-file CERT --chain CHAIN\n", o.csrOut, resp.CsrKeyId)
		return nil
	}
	j := authorityToJSON(resp.Authority)
	if o.output.json() {
		return printJSON(env.stdout, j)
	}
	fmt.Fprintln(env.stdout, j.ID)
	fmt.Fprintf(env.stderr, "prepared root %s (not after %s); it is in the trust bundle now.\nWhen `signet root status` shows every agent has applied it, run: signet root activate %s\n", j.ID, j.NotAfter, j.ID)
	return nil
}

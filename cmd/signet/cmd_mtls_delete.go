package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

type mtlsDeleteOptions struct {
	admin adminOptions
	force bool
}

func newMTLSDeleteCommand(env *cliEnv) *cobra.Command {
	var o mtlsDeleteOptions
	cmd := &cobra.Command{
		Use:   "delete ID",
		Short: "delete an mTLS policy",
		Example: `  signet mtls delete mp-2
  signet mtls delete mp-2 --force   # even though workloads that received plaintext would fall under STRICT`,
		Args: exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(cmd.Context(), env, args[0]) },
	}
	o.admin.addFlags(cmd.Flags(), env)
	cmd.Flags().BoolVar(&o.force, "force", false, "delete even though workloads that received plaintext recently would fall under STRICT")
	return cmd
}

func (o *mtlsDeleteOptions) run(ctx context.Context, env *cliEnv, id string) error {
	resp, err := adminCall(ctx, &o.admin, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.DeleteMTLSPolicyResponse, error) {
		return c.DeleteMTLSPolicy(ctx, &adminv1.DeleteMTLSPolicyRequest{Id: id, Force: o.force})
	})
	if err != nil {
		return err
	}
	if len(resp.PlaintextWorkloads) > 0 {
		fmt.Fprintf(env.stderr, "warning: forced over workloads that received plaintext recently: %s\n", strings.Join(resp.PlaintextWorkloads, ", "))
	}
	fmt.Fprintf(env.stderr, "deleted mTLS policy %s\n", id)
	return nil
}

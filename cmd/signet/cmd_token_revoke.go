package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

type tokenRevokeOptions struct {
	admin    adminOptions
	nodeName string
}

func newTokenRevokeCommand(env *cliEnv) *cobra.Command {
	var o tokenRevokeOptions
	cmd := &cobra.Command{
		Use:   "revoke (ID | --node-name NAME)",
		Short: "revoke unused join tokens, by token id or by node name",
		Example: `  signet token revoke 3f9c2a...           # an id from signet token list
  signet token revoke --node-name node1   # every unused token for node1`,
		Args: optionalArg("token ID"),
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(cmd.Context(), env, args) },
	}
	o.admin.addFlags(cmd.Flags(), env)
	cmd.Flags().StringVar(&o.nodeName, "node-name", "", "revoke the unused tokens for this node name")
	return cmd
}

func (o *tokenRevokeOptions) run(ctx context.Context, env *cliEnv, args []string) error {
	req := &adminv1.RevokeJoinTokenRequest{NodeName: o.nodeName}
	if len(args) == 1 {
		req.Id = args[0]
	}
	switch {
	case req.Id == "" && req.NodeName == "":
		return errors.New("give a token ID (signet token list) or --node-name NAME")
	case req.Id != "" && req.NodeName != "":
		return errors.New("give a token ID or --node-name, not both")
	}
	resp, err := adminCall(ctx, &o.admin, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.RevokeJoinTokenResponse, error) {
		return c.RevokeJoinToken(ctx, req)
	})
	if err != nil {
		return err
	}
	if len(resp.Revoked) == 0 {
		if req.Id != "" {
			return fmt.Errorf("no unused join token with id %s", req.Id)
		}
		return fmt.Errorf("no unused join token for node %s", req.NodeName)
	}
	for _, t := range resp.Revoked {
		fmt.Fprintf(env.stderr, "revoked join token %s (node %s)\n", t.Id, orDash(t.NodeName))
	}
	return nil
}

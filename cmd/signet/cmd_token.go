package main

import (
	"github.com/spf13/cobra"

	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

func newTokenCommand(env *cliEnv) *cobra.Command {
	return newGroupCommand("token", "join tokens for attesting agents", `  signet token create --node-name node1
  signet token list
  signet token revoke --node-name node1`,
		newTokenCreateCommand(env),
		newTokenListCommand(env),
		newTokenRevokeCommand(env),
	)
}

// joinTokenJSON is the -o json shape of an unused token as listed (never
// its secret).
type joinTokenJSON struct {
	ID        string `json:"id"`
	NodeName  string `json:"node_name"`
	SPIFFEID  string `json:"spiffe_id"`
	ExpiresAt string `json:"expires_at"`
	CreatedAt string `json:"created_at"`
}

func joinTokenToJSON(t *adminv1.JoinToken) joinTokenJSON {
	return joinTokenJSON{ID: t.Id, NodeName: t.NodeName, SPIFFEID: t.SpiffeId, ExpiresAt: unixTime(t.ExpiresAt), CreatedAt: unixTime(t.CreatedAt)}
}

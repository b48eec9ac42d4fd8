package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/signet-mesh/signet/cmd/internal/cli"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

// tokenJSON is the -o json shape of `token create`: token, spiffe_id and
// expires_at are a contract; id and replaced_node_id were added with
// token list/revoke and --force.
type tokenJSON struct {
	Token          string `json:"token"`
	SPIFFEID       string `json:"spiffe_id"`
	ExpiresAt      string `json:"expires_at"`
	ID             string `json:"id,omitempty"`
	ReplacedNodeID string `json:"replaced_node_id,omitempty"`
}

type tokenCreateOptions struct {
	admin    adminOptions
	output   outputOption
	ttl      time.Duration
	nodeName string
	force    bool
}

func (o *tokenCreateOptions) addFlags(cmd *cobra.Command, env *cliEnv) {
	fs := cmd.Flags()
	o.admin.addFlags(fs, env)
	o.output.addFlags(cmd, objectFormats)
	fs.Var(cli.NewDurationValue(&o.ttl, 10*time.Minute), "ttl", "how long the token may be used (90s, 1h, 7d)")
	fs.StringVar(&o.nodeName, "node-name", "", "name for the node's SPIFFE ID (default: the token id)")
	fs.BoolVar(&o.force, "force", false, "create it even though a live node has this name: that node is replaced when the token is used (audited)")
}

func newTokenCreateCommand(env *cliEnv) *cobra.Command {
	var o tokenCreateOptions
	cmd := &cobra.Command{
		Use:   "create",
		Short: "create a single-use join token",
		Long: `Create a single-use join token for an agent's first attestation. The node's
SPIFFE ID is spiffe://<trust domain>/signet/agent/join_token/<node name>. A
name that belongs to a live (attested, not evicted) node is refused: evict
the node first (signet node evict), or give --force to replace it.`,
		Example: `  signet token create --node-name node1
  signet token create --node-name node1 --ttl 1d -o json | jq -r .token
  signet token create --node-name node1 --force     # replace the live node1`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context(), env) },
	}
	o.addFlags(cmd, env)
	return cmd
}

func (o *tokenCreateOptions) run(ctx context.Context, env *cliEnv) error {
	if o.ttl <= 0 {
		return fmt.Errorf("--ttl %s: must be positive", o.ttl)
	}
	secs := int64(o.ttl.Round(time.Second) / time.Second)
	if secs == 0 {
		return fmt.Errorf("--ttl %s: must be at least 1s", o.ttl)
	}
	resp, err := adminCall(ctx, &o.admin, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.CreateJoinTokenResponse, error) {
		return c.CreateJoinToken(ctx, &adminv1.CreateJoinTokenRequest{TtlSeconds: secs, NodeName: o.nodeName, Force: o.force})
	})
	if err != nil {
		return err
	}
	if resp.ReplacedNodeId != "" {
		fmt.Fprintf(env.stderr, "warning: this token replaces the live node %s: when it is used, that node can no longer renew or mint\n", resp.ReplacedNodeId)
	}
	j := tokenJSON{Token: resp.Token, SPIFFEID: resp.SpiffeId, ExpiresAt: unixTime(resp.ExpiresAt), ID: resp.Id, ReplacedNodeID: resp.ReplacedNodeId}
	if o.output.json() {
		return printJSON(env.stdout, j)
	}
	return printTable(env.stdout, []string{"TOKEN", "NODE ID", "EXPIRES"}, [][]string{{j.Token, j.SPIFFEID, j.ExpiresAt}})
}

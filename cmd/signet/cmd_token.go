package main

import (
	"context"
	"fmt"
	"time"

	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

func tokenCommand() *command {
	return &command{name: "token", summary: "join tokens for attesting agents", sub: []*command{
		{name: "create", summary: "create a single-use join token", run: runTokenCreate},
	}}
}

// tokenJSON is the -o json shape of `token create` (a contract).
type tokenJSON struct {
	Token     string `json:"token"`
	SPIFFEID  string `json:"spiffe_id"`
	ExpiresAt string `json:"expires_at"`
}

func runTokenCreate(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "token create", "signet token create [--ttl 10m] [--node-name NAME] [-o json]")
	var af adminFlags
	af.register(fs, env)
	ttl := fs.Duration("ttl", 10*time.Minute, "how long the token may be used")
	name := fs.String("node-name", "", "name for the node's SPIFFE ID (default: the token id)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := exactArgs(fs, pos); err != nil {
		return err
	}
	if err := af.validate(); err != nil {
		return err
	}
	if *ttl <= 0 {
		return fmt.Errorf("--ttl %s must be positive", *ttl)
	}
	resp, err := adminCall(ctx, &af, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.CreateJoinTokenResponse, error) {
		return c.CreateJoinToken(ctx, &adminv1.CreateJoinTokenRequest{TtlSeconds: int64(ttl.Round(time.Second) / time.Second), NodeName: *name})
	})
	if err != nil {
		return err
	}
	if af.output == "json" {
		return printJSON(env.stdout, tokenJSON{Token: resp.Token, SPIFFEID: resp.SpiffeId, ExpiresAt: unixTime(resp.ExpiresAt)})
	}
	fmt.Fprintln(env.stdout, resp.Token)
	return nil
}

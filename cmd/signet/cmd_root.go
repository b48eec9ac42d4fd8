package main

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

func newRootCACommand(env *cliEnv) *cobra.Command {
	return newGroupCommand("root", "root rotation: prepared -> active -> retiring -> retired", `  signet root prepare                  # the new root joins the trust bundle at once
  signet root status                   # wait until every agent has applied it
  signet root activate --rotate-now
  signet root retire                   # once nothing chains to the old root`,
		newRootListCommand(env),
		newRootStatusCommand(env),
		newRootPrepareCommand(env),
		newRootActivateCommand(env),
		newRootRetireCommand(env),
	)
}

// authorityJSON is the -o json shape of an authority (a contract).
type authorityJSON struct {
	ID        string `json:"id"`
	Kind      string `json:"kind"`
	State     string `json:"state"`
	KeyType   string `json:"key_type"`
	NotBefore string `json:"not_before"`
	NotAfter  string `json:"not_after"`
	ParentID  string `json:"parent_id,omitempty"`
	// UnexpiredSVIDs chain to the authority (node SVIDs included).
	UnexpiredSVIDs int64 `json:"unexpired_svids"`
	// AgentsApplied of ConnectedAgents have applied a bundle holding the
	// root; set for roots in the bundle only.
	AgentsApplied   *int64 `json:"agents_applied,omitempty"`
	ConnectedAgents *int64 `json:"connected_agents,omitempty"`
	// ExpiringSoon: within 30 days of expiry (for lives over 90 days), or
	// less than a third of its life left.
	ExpiringSoon bool `json:"expiring_soon"`
	// CrossSignedBy is, for an intermediate, the retiring root that
	// cross-signed it.
	CrossSignedBy string `json:"cross_signed_by,omitempty"`
	// CreatedAt is when the authority was stored (RFC 3339, nanoseconds):
	// for a root, when it entered the trust bundle.
	CreatedAt string `json:"created_at,omitempty"`
}

func authorityToJSON(a *adminv1.Authority) authorityJSON {
	j := authorityJSON{
		ID: a.Id, Kind: a.Kind, State: a.State, KeyType: a.KeyType,
		NotBefore: unixTime(a.NotBefore), NotAfter: unixTime(a.NotAfter), ParentID: a.ParentId,
		UnexpiredSVIDs: a.UnexpiredSvids, ExpiringSoon: a.ExpiringSoon, CrossSignedBy: a.CrossSignedBy,
	}
	if n := a.CreatedAtUnixNano; n != 0 {
		j.CreatedAt = time.Unix(0, n).UTC().Format(time.RFC3339Nano)
	}
	if a.Kind == "root" && a.State != "retired" {
		applied, connected := a.AgentsApplied, a.ConnectedAgents
		j.AgentsApplied, j.ConnectedAgents = &applied, &connected
	}
	return j
}

// listAuthorities calls ListAuthorities.
func listAuthorities(ctx context.Context, a *adminOptions) (*adminv1.ListAuthoritiesResponse, error) {
	resp, err := adminCall(ctx, a, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.ListAuthoritiesResponse, error) {
		return c.ListAuthorities(ctx, &adminv1.ListAuthoritiesRequest{})
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

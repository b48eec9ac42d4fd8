package main

import (
	"context"
	"encoding/csv"

	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

func svidCommand() *command {
	return &command{name: "svid", summary: "issued certificates", sub: []*command{
		{name: "list", summary: "list issued SVIDs (serial, SPIFFE ID, node, expiry)", run: runSVIDList},
	}}
}

// svidJSON is the -o json shape of an issued SVID (a contract).
type svidJSON struct {
	Serial      string `json:"serial"`
	SPIFFEID    string `json:"spiffe_id"`
	NodeID      string `json:"node_id"`
	EntryID     string `json:"entry_id,omitempty"`
	NotBefore   string `json:"not_before"`
	ExpiresAt   string `json:"expires_at"`
	AuthorityID string `json:"authority_id"`
}

func runSVIDList(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "svid list", "signet svid list [--valid] [--spiffe-id ID] [-o json|csv]")
	var af adminFlags
	af.register(fs, env)
	valid := fs.Bool("valid", false, "only certificates valid now (the inventory)")
	spiffeID := fs.String("spiffe-id", "", "only certificates for this SPIFFE ID")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := exactArgs(fs, pos); err != nil {
		return err
	}
	if af.output != "csv" {
		if err := af.validate(); err != nil {
			return err
		}
	}
	resp, err := adminCall(ctx, &af, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.ListSVIDsResponse, error) {
		return c.ListSVIDs(ctx, &adminv1.ListSVIDsRequest{Valid: *valid, SpiffeId: *spiffeID})
	})
	if err != nil {
		return err
	}
	out := make([]svidJSON, 0, len(resp.Svids))
	rows := make([][]string, 0, len(resp.Svids))
	for _, s := range resp.Svids {
		j := svidJSON{Serial: s.Serial, SPIFFEID: s.SpiffeId, NodeID: s.NodeId, EntryID: s.EntryId,
			NotBefore: unixTime(s.NotBefore), ExpiresAt: unixTime(s.ExpiresAt), AuthorityID: s.AuthorityId}
		out = append(out, j)
		rows = append(rows, []string{j.Serial, j.SPIFFEID, j.NodeID, j.ExpiresAt})
	}
	header := []string{"SERIAL", "SPIFFE ID", "NODE", "EXPIRES"}
	switch af.output {
	case "json":
		return printJSON(env.stdout, out)
	case "csv":
		w := csv.NewWriter(env.stdout)
		w.Write([]string{"serial", "spiffe_id", "node_id", "entry_id", "not_before", "expires_at", "authority_id"})
		for _, j := range out {
			w.Write([]string{j.Serial, j.SPIFFEID, j.NodeID, j.EntryID, j.NotBefore, j.ExpiresAt, j.AuthorityID})
		}
		w.Flush()
		return w.Error()
	}
	return printTable(env.stdout, header, rows)
}

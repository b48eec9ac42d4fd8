package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

func newFederationCommand(env *cliEnv) *cobra.Command {
	return newGroupCommand("federation", "trust other SPIFFE trust domains through their bundle endpoints", `  signet federation create --trust-domain other.org \
      --bundle-endpoint-url https://bundle.other.org:8443 --profile https_spiffe \
      --endpoint-spiffe-id spiffe://other.org/signet/server --bundle-file other.pem
  signet federation list -o json
  signet federation refresh other.org`,
		newFederationCreateCommand(env),
		newFederationListCommand(env),
		newFederationShowCommand(env),
		newFederationDeleteCommand(env),
		newFederationRefreshCommand(env),
	)
}

// federationJSON is the -o json shape of a federation relationship (a
// contract). Times are RFC 3339 UTC, "-" for never.
type federationJSON struct {
	TrustDomain       string `json:"trust_domain"`
	BundleEndpointURL string `json:"bundle_endpoint_url"`
	Profile           string `json:"profile"`
	EndpointSPIFFEID  string `json:"endpoint_spiffe_id,omitempty"`
	CreatedAt         string `json:"created_at"`
	// The last good bundle: its spiffe_sequence, refresh hint, sizes and
	// when it was stored.
	Sequence        uint64 `json:"sequence"`
	RefreshHint     string `json:"refresh_hint,omitempty"`
	X509Authorities int32  `json:"x509_authorities"`
	JWTAuthorities  int32  `json:"jwt_authorities"`
	BundleUpdatedAt string `json:"bundle_updated_at"`
	// This server's refresh state.
	LastRefresh string `json:"last_refresh"`
	LastError   string `json:"last_error,omitempty"`
	LastErrorAt string `json:"last_error_at,omitempty"`
	NextRefresh string `json:"next_refresh"`
}

// federationShowJSON is `federation show -o json`: the relationship and
// its last good bundle, a SPIFFE bundle document.
type federationShowJSON struct {
	federationJSON
	Bundle json.RawMessage `json:"bundle,omitempty"`
}

func federationToJSON(r *adminv1.FederationRelationship) federationJSON {
	j := federationJSON{
		TrustDomain: r.TrustDomain, BundleEndpointURL: r.BundleEndpointUrl, Profile: r.Profile,
		EndpointSPIFFEID: r.EndpointSpiffeId, CreatedAt: unixTime(r.CreatedAt),
		Sequence: r.Sequence, X509Authorities: r.X509Authorities, JWTAuthorities: r.JwtAuthorities,
		BundleUpdatedAt: unixTime(r.BundleUpdatedAt), LastRefresh: unixTime(r.LastRefreshAt),
		LastError: r.LastError, NextRefresh: unixTime(r.NextRefreshAt),
	}
	if r.RefreshHintSeconds > 0 {
		j.RefreshHint = (time.Duration(r.RefreshHintSeconds) * time.Second).String()
	}
	if r.LastErrorAt != 0 {
		j.LastErrorAt = unixTime(r.LastErrorAt)
	}
	return j
}

// printFederation writes one relationship as `federation show` does.
func printFederation(w io.Writer, output outputOption, r *adminv1.FederationRelationship) error {
	j := federationToJSON(r)
	if output.json() {
		return printJSON(w, federationShowJSON{federationJSON: j, Bundle: json.RawMessage(r.Bundle)})
	}
	rows := [][]string{
		{"Trust domain", j.TrustDomain}, {"Endpoint URL", j.BundleEndpointURL}, {"Profile", j.Profile},
		{"Endpoint ID", orDash(j.EndpointSPIFFEID)}, {"Created", j.CreatedAt},
		{"Sequence", strconv.FormatUint(j.Sequence, 10)}, {"Refresh hint", orDash(j.RefreshHint)},
		{"X.509 roots", fmt.Sprint(j.X509Authorities)}, {"JWT keys", fmt.Sprint(j.JWTAuthorities)},
		{"Bundle updated", j.BundleUpdatedAt}, {"Last refresh", j.LastRefresh}, {"Next refresh", j.NextRefresh},
	}
	if j.LastError != "" {
		rows = append(rows, []string{"Last error", j.LastErrorAt + " " + j.LastError})
	}
	for _, r := range rows {
		fmt.Fprintf(w, "%-15s %s\n", r[0]+":", r[1])
	}
	return nil
}

// federationCall is adminCall for the FederationService, served on the
// same admin socket.
func federationCall[T any](ctx context.Context, a *adminOptions, call func(context.Context, adminv1.FederationServiceClient) (T, error)) (T, error) {
	var zero T
	conn, err := a.conn()
	if err != nil {
		return zero, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, adminCallTimeout)
	defer cancel()
	resp, err := call(ctx, adminv1.NewFederationServiceClient(conn))
	if err != nil {
		return zero, a.rpcError(err)
	}
	return resp, nil
}

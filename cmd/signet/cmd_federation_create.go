package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/signet-mesh/signet/cmd/internal/cli"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

// maxBundleFile bounds a --bundle-file.
const maxBundleFile = 1 << 20

type federationCreateOptions struct {
	admin       adminOptions
	output      outputOption
	trustDomain string
	url         string
	profile     string
	endpointID  string
	bundleFile  string
}

func newFederationCreateCommand(env *cliEnv) *cobra.Command {
	var o federationCreateOptions
	cmd := &cobra.Command{
		Use:   "create --trust-domain TD --bundle-endpoint-url URL [--profile https_spiffe --endpoint-spiffe-id ID --bundle-file FILE | --profile https_web]",
		Short: "trust another trust domain through its bundle endpoint",
		Long: `Federate with another SPIFFE trust domain. The server fetches its bundle from
--bundle-endpoint-url at once, then on the bundle's refresh hint, keeping
the last good bundle when the endpoint is down or answers something it
refuses. Entries name the domains their workloads trust with
--federates-with.

With --profile https_spiffe (the default) the endpoint must present an
X509-SVID with --endpoint-spiffe-id, verified with the other domain's roots:
give them with --bundle-file (a SPIFFE bundle or PEM, such as the output of
'signet bundle show' on the other side). With --profile https_web the
endpoint presents a Web PKI certificate, verified with the system roots.`,
		Example: `  signet federation create --trust-domain other.org \
      --bundle-endpoint-url https://bundle.other.org:8443 --profile https_spiffe \
      --endpoint-spiffe-id spiffe://other.org/signet/server --bundle-file initial.pem
  signet federation create --trust-domain partner.com \
      --bundle-endpoint-url https://partner.com/spiffe/bundle --profile https_web`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context(), env) },
	}
	fs := cmd.Flags()
	o.admin.addFlags(fs, env)
	o.output.addFlags(cmd, objectFormats)
	fs.StringVar(&o.trustDomain, "trust-domain", "", "the other trust domain (other.org)")
	fs.StringVar(&o.url, "bundle-endpoint-url", "", "https URL of its SPIFFE bundle endpoint")
	cmd.Flags().Var(newChoiceValue(&o.profile, "https_spiffe", []string{"https_spiffe", "https_web"}, "profile"), "profile", "how the endpoint authenticates: https_spiffe or https_web")
	fs.StringVar(&o.endpointID, "endpoint-spiffe-id", "", "https_spiffe: the SPIFFE ID the endpoint presents")
	fs.StringVar(&o.bundleFile, "bundle-file", "", "the other domain's initial bundle (SPIFFE bundle JSON or PEM)")
	return cmd
}

func (o *federationCreateOptions) run(ctx context.Context, env *cliEnv) error {
	req := &adminv1.CreateFederationRequest{
		TrustDomain: o.trustDomain, BundleEndpointUrl: o.url, Profile: o.profile, EndpointSpiffeId: o.endpointID,
	}
	switch {
	case o.trustDomain == "":
		return fmt.Errorf("--trust-domain is required")
	case o.url == "":
		return fmt.Errorf("--bundle-endpoint-url is required")
	case o.profile == "https_web" && o.endpointID != "":
		return fmt.Errorf("--endpoint-spiffe-id is only for --profile https_spiffe: an https_web endpoint is authenticated by its Web PKI certificate")
	case o.profile == "https_spiffe" && o.endpointID == "":
		return fmt.Errorf("--endpoint-spiffe-id is required with --profile https_spiffe (such as spiffe://%s/signet/server)", o.trustDomain)
	}
	if o.bundleFile != "" {
		data, err := cli.ReadLimited(o.bundleFile, maxBundleFile)
		if err != nil {
			return fmt.Errorf("--bundle-file: %w", err)
		}
		req.InitialBundle = data
	}
	resp, err := federationCall(ctx, &o.admin, func(ctx context.Context, c adminv1.FederationServiceClient) (*adminv1.CreateFederationResponse, error) {
		return c.CreateFederation(ctx, req)
	})
	if err != nil {
		return err
	}
	if o.output.json() {
		return printFederation(env.stdout, o.output, resp.Relationship)
	}
	fmt.Fprintf(env.stderr, "federating with %s; its bundle is fetched from %s\n", resp.Relationship.TrustDomain, resp.Relationship.BundleEndpointUrl)
	return nil
}

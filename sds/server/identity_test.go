package server_test

import (
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/sds/server"
)

// TestNoIdentityNoBundle: a caller that holds no SVID (no entry matches
// it) gets no bundle either, by any name and over every protocol, as on
// the Workload API; its bundles arrive with its first SVID.
func TestNoIdentityNoBundle(t *testing.T) {
	bundleNames := []string{server.RootCAName, server.AllBundlesName, "spiffe://example.org", "spiffe://federated.test"}
	h := newHarness(t)
	h.web, h.db = nil, nil
	h.publish()

	for _, name := range bundleNames {
		_, err := h.client.FetchSecrets(t.Context(), &discoveryv3.DiscoveryRequest{TypeUrl: server.SecretTypeURL, ResourceNames: []string{name}})
		if status.Code(err) != codes.NotFound {
			t.Errorf("FetchSecrets %s without an identity: %v, want NotFound", name, err)
		}
	}
	sotw := h.openStream(bundleNames...)
	sotw.expectNone()
	d := h.openDelta(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: server.SecretTypeURL, ResourceNamesSubscribe: bundleNames})
	resp := d.recv(replyTimeout)
	wantDelta(t, resp, nil, append([]string(nil), bundleNames...))
	d.ack(resp)

	// The first SVID brings the bundles.
	h.web = h.ca.SVID(t, "/web")
	h.publish()
	wantNames(t, sotw.recv(replyTimeout).GetResources(), bundleNames...)
	wantDelta(t, d.recv(replyTimeout), append([]string(nil), bundleNames...), nil)
}

package sync_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/agent/cache"
	"github.com/signet-mesh/signet/agent/client"
	agentsync "github.com/signet-mesh/signet/agent/sync"
	"github.com/signet-mesh/signet/internal/backoff"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
	"github.com/signet-mesh/signet/test/testserver"
)

// otherRoot is a root CA certificate of other.org, PEM.
func otherRoot(t *testing.T) ([]byte, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{Organization: []string{"other.org"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
		URIs: []*url.URL{{Scheme: "spiffe", Host: "other.org"}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), c
}

// TestSyncerFederatedBundles: a federated bundle stored on a real CA
// reaches the cache over the stream, is served only to workloads whose
// entries federate with its domain, and goes away when the relationship
// is deleted.
func TestSyncerFederatedBundles(t *testing.T) {
	s := testserver.Start(t)
	tok := s.JoinToken(t, "node1")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	svid, b, err := client.Attest(ctx, client.AttestParams{Address: s.Addr, TrustDomain: testserver.TrustDomain, Bootstrap: s.Roots(t), JoinToken: tok.GetToken(), Key: key})
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := client.BundleFromProto(testserver.TrustDomain, b)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(s.Addr, testserver.TrustDomain, client.NewSource(svid, bundle))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	pemRoot, root := otherRoot(t)
	// The endpoint is never reached: the initial bundle is what agents get.
	if _, err := s.Federation.CreateFederation(ctx, &adminv1.CreateFederationRequest{
		TrustDomain: "other.org", BundleEndpointUrl: "https://127.0.0.1:1/bundle", Profile: "https_web", InitialBundle: pemRoot,
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Admin.CreateEntries(ctx, &adminv1.CreateEntriesRequest{Entries: []*adminv1.Entry{
		{SpiffeId: "spiffe://example.org/fed", ParentId: svid.ID.String(), Selectors: []string{"unix:uid:1000"}, FederatesWith: []string{"other.org"}},
		{SpiffeId: "spiffe://example.org/plain", ParentId: svid.ID.String(), Selectors: []string{"unix:uid:1001"}},
	}}); err != nil {
		t.Fatal(err)
	}

	rec := &recorder{}
	ch := cache.New(cache.Config{TrustDomain: testserver.TrustDomain})
	syncer := agentsync.New(agentsync.Config{
		TrustDomain: testserver.TrustDomain, Cache: ch, CA: c, Minter: rec, Scheduler: rec,
		BundleChanged: func(*x509bundle.Bundle) {}, BundleApplied: func(time.Duration) {}, Policies: func(*nodev1.MTLSPolicies) {},
		Backoff: backoff.Config{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond},
	})
	done := make(chan error, 1)
	go func() { done <- syncer.Run(ctx) }()
	defer func() { cancel(); <-done }()

	other := spiffeid.RequireTrustDomainFromString("other.org")
	federated := func(sels ...string) []*x509bundle.Bundle { return ch.Lookup(sels).FederatedBundles }
	waitFor(t, "other.org's bundle in the cache", func() bool { return len(federated("unix:uid:1000")) == 1 })
	fb := federated("unix:uid:1000")[0]
	if fb.TrustDomain() != other || len(fb.X509Authorities()) != 1 || !fb.X509Authorities()[0].Equal(root) {
		t.Errorf("federated bundle %s with %d roots, want other.org's root", fb.TrustDomain(), len(fb.X509Authorities()))
	}
	if got := federated("unix:uid:1001"); len(got) != 0 {
		t.Errorf("a workload whose entry does not federate got %d federated bundles", len(got))
	}
	// The plain entry starts federating: its workload gets the bundle. A
	// domain without a relationship is refused, naming it.
	var plainID string
	for _, e := range ch.Entries() {
		if e.SPIFFEID.String() == "spiffe://example.org/plain" {
			plainID = e.ID
		}
	}
	_, err = s.Admin.UpdateEntry(ctx, &adminv1.UpdateEntryRequest{Id: plainID, FederatesWith: &adminv1.StringList{Values: []string{"nowhere.org"}}})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), `federates_with "nowhere.org": no federation relationship`) {
		t.Errorf("update federating with an unknown domain: %v, want FailedPrecondition naming it", err)
	}
	if _, err := s.Admin.UpdateEntry(ctx, &adminv1.UpdateEntryRequest{Id: plainID, FederatesWith: &adminv1.StringList{Values: []string{"other.org"}}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the updated entry's workload to get other.org's bundle", func() bool { return len(federated("unix:uid:1001")) == 1 })
	if _, err := s.Federation.DeleteFederation(ctx, &adminv1.DeleteFederationRequest{TrustDomain: "other.org"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "other.org's bundle to leave the cache", func() bool { return len(federated("unix:uid:1000")) == 0 })
}

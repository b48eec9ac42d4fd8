package server_test

import (
	"encoding/pem"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/signet-mesh/signet/sds/internal/sdstest"
	"github.com/signet-mesh/signet/sds/server"
)

const (
	// pushDeadline bounds the wait for a push: a rotated SVID or a new
	// bundle reaches every watching stream without the client asking. The
	// latency target (100 ms to every stream) is a figure of
	// BenchmarkPushFanout, not a timed test on a shared machine.
	pushDeadline = 5 * time.Second
	// quiet is how long a test waits to conclude that nothing is sent.
	quiet = 200 * time.Millisecond
	// replyTimeout bounds waits for responses that are not push-timed.
	replyTimeout = 5 * time.Second
)

// harness runs a server on a Unix socket with a fake source holding two
// identities (web is the default, then db) in example.org, and a federated
// trust domain.
type harness struct {
	t      *testing.T
	ca     *sdstest.CA
	fed    *sdstest.CA
	src    *sdstest.Source
	att    *sdstest.Attestor
	logs   *sdstest.LogRecorder
	client secretv3.SecretDiscoveryServiceClient

	pushes atomic.Int64
	nacks  atomic.Int64

	// State published by publish.
	web, db  *x509svid.SVID
	own, fdb *x509bundle.Bundle
	revision int64
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{
		t:    t,
		ca:   sdstest.NewCA(t, "example.org"),
		fed:  sdstest.NewCA(t, "federated.test"),
		src:  sdstest.NewSource(),
		att:  &sdstest.Attestor{Selectors: []string{"unix:uid:1000"}},
		logs: &sdstest.LogRecorder{},
	}
	h.web = h.ca.SVID(t, "/web")
	h.db = h.ca.SVID(t, "/db")
	h.own = h.ca.Bundle()
	h.fdb = h.fed.Bundle()
	h.publish()

	srv := server.New(server.Config{
		Source:   h.src,
		Attestor: h.att,
		Logger:   h.logs.Logger(),
		Metrics: server.Metrics{
			Pushed:   func(string, int) { h.pushes.Add(1) },
			Rejected: func(string) { h.nacks.Add(1) },
		},
	})
	path := filepath.Join(t.TempDir(), "sds.sock")
	sdstest.Serve(t, path, srv)
	h.client = secretv3.NewSecretDiscoveryServiceClient(dial(t, path))
	return h
}

func dial(tb testing.TB, path string) *grpc.ClientConn {
	tb.Helper()
	conn, err := grpc.NewClient("unix:"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatalf("dialing %s: %v", path, err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn
}

// publish hands the harness state to the source as a new snapshot.
func (h *harness) publish() {
	var ids []server.Identity
	for _, svid := range []*x509svid.SVID{h.web, h.db} {
		if svid != nil {
			ids = append(ids, server.Identity{SVID: server.FromX509SVID(svid)})
		}
	}
	h.revision++
	h.src.Set(&server.Snapshot{
		Identities:       ids,
		Bundle:           h.own,
		FederatedBundles: []*x509bundle.Bundle{h.fdb},
		BundleRevision:   h.revision,
	})
}

// rotateWeb gives the default identity a new SVID and publishes it.
func (h *harness) rotateWeb() {
	h.web = h.ca.SVID(h.t, "/web")
	h.publish()
}

// waitLogged waits until the server has logged msg n times: tests use it to
// know a request was processed before they change the source.
func (h *harness) waitLogged(msg string, n int) {
	h.t.Helper()
	deadline := time.Now().Add(replyTimeout)
	for len(h.logs.Find(msg)) < n {
		if time.Now().After(deadline) {
			h.t.Fatalf("%q logged %d times, want %d", msg, len(h.logs.Find(msg)), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// sotw is a raw StreamSecrets client with a background reader, so tests can
// wait for a response with a deadline, or for silence.
type sotw struct {
	t      *testing.T
	stream grpc.BidiStreamingClient[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse]
	resps  chan *discoveryv3.DiscoveryResponse
	errc   chan error
}

// openStream opens a stream and sends the first request for names.
func (h *harness) openStream(names ...string) *sotw {
	h.t.Helper()
	ctx := h.t.Context()
	stream, err := h.client.StreamSecrets(ctx)
	if err != nil {
		h.t.Fatalf("opening stream: %v", err)
	}
	s := &sotw{t: h.t, stream: stream, resps: make(chan *discoveryv3.DiscoveryResponse, 16), errc: make(chan error, 1)}
	go func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				s.errc <- err
				return
			}
			s.resps <- resp
		}
	}()
	s.send(&discoveryv3.DiscoveryRequest{TypeUrl: server.SecretTypeURL, ResourceNames: names})
	return s
}

func (s *sotw) send(req *discoveryv3.DiscoveryRequest) {
	s.t.Helper()
	// io.EOF means the server has ended the stream (it may refuse the
	// caller before reading anything): its status is what Recv returns,
	// which the test's wantErr checks.
	if err := s.stream.Send(req); err != nil && !errors.Is(err, io.EOF) {
		s.t.Fatalf("sending request: %v", err)
	}
}

// ack acknowledges resp and (re)states the subscribed names.
func (s *sotw) ack(resp *discoveryv3.DiscoveryResponse, names ...string) {
	s.t.Helper()
	s.send(&discoveryv3.DiscoveryRequest{
		TypeUrl:       server.SecretTypeURL,
		VersionInfo:   resp.GetVersionInfo(),
		ResponseNonce: resp.GetNonce(),
		ResourceNames: names,
	})
}

// nack rejects resp, staying at version kept.
func (s *sotw) nack(resp *discoveryv3.DiscoveryResponse, kept string, names ...string) {
	s.t.Helper()
	s.send(&discoveryv3.DiscoveryRequest{
		TypeUrl:       server.SecretTypeURL,
		VersionInfo:   kept,
		ResponseNonce: resp.GetNonce(),
		ResourceNames: names,
		ErrorDetail:   &status.Status{Code: int32(codes.InvalidArgument), Message: "test rejects this"},
	})
}

// recv returns the next response, failing the test if none comes within d.
func (s *sotw) recv(d time.Duration) *discoveryv3.DiscoveryResponse {
	s.t.Helper()
	select {
	case resp := <-s.resps:
		return resp
	case err := <-s.errc:
		s.t.Fatalf("stream ended while waiting for a response: %v", err)
	case <-time.After(d):
		s.t.Fatalf("no response within %v", d)
	}
	return nil
}

// expectNone fails the test if a response arrives within quiet.
func (s *sotw) expectNone() {
	s.t.Helper()
	select {
	case resp := <-s.resps:
		s.t.Fatalf("unexpected response: %v", names(s.t, resp.GetResources()))
	case err := <-s.errc:
		s.t.Fatalf("stream ended: %v", err)
	case <-time.After(quiet):
	}
}

// wantErr waits for the stream to end and returns its error.
func (s *sotw) wantErr() error {
	s.t.Helper()
	select {
	case err := <-s.errc:
		return err
	case resp := <-s.resps:
		s.t.Fatalf("got response %v, want the stream to fail", names(s.t, resp.GetResources()))
	case <-time.After(replyTimeout):
		s.t.Fatal("stream did not end")
	}
	return nil
}

// decode unpacks the secrets of a response, keyed by name.
func decode(tb testing.TB, resources []*anypb.Any) map[string]*tlsv3.Secret {
	tb.Helper()
	out := make(map[string]*tlsv3.Secret)
	for _, a := range resources {
		if a.GetTypeUrl() != server.SecretTypeURL {
			tb.Fatalf("resource type %q, want %q", a.GetTypeUrl(), server.SecretTypeURL)
		}
		s := &tlsv3.Secret{}
		if err := a.UnmarshalTo(s); err != nil {
			tb.Fatalf("decoding secret: %v", err)
		}
		if _, dup := out[s.GetName()]; dup {
			tb.Fatalf("secret %q twice in one response", s.GetName())
		}
		out[s.GetName()] = s
	}
	return out
}

// names lists the secret names of resources, sorted.
func names(tb testing.TB, resources []*anypb.Any) []string {
	tb.Helper()
	var out []string
	for name := range decode(tb, resources) {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

func wantNames(tb testing.TB, resources []*anypb.Any, want ...string) {
	tb.Helper()
	slices.Sort(want)
	if diff := cmp.Diff(want, names(tb, resources)); diff != "" {
		tb.Fatalf("secret names (-want +got):\n%s", diff)
	}
}

// checkTLSCertificate checks that secret carries svid: its chain and a
// PKCS#8 key that go-spiffe accepts as a valid SVID with the same ID.
func checkTLSCertificate(tb testing.TB, secret *tlsv3.Secret, svid *x509svid.SVID) {
	tb.Helper()
	tc := secret.GetTlsCertificate()
	if tc == nil {
		tb.Fatalf("secret %q has no tls_certificate: %v", secret.GetName(), secret)
	}
	chain := tc.GetCertificateChain().GetInlineBytes()
	key := tc.GetPrivateKey().GetInlineBytes()
	if block, _ := pem.Decode(key); block == nil || block.Type != "PRIVATE KEY" {
		tb.Fatalf("secret %q: private key is not a PEM PKCS#8 key", secret.GetName())
	}
	got, err := x509svid.Parse(chain, key)
	if err != nil {
		tb.Fatalf("secret %q: parsing SVID: %v", secret.GetName(), err)
	}
	if got.ID != svid.ID || !got.Certificates[0].Equal(svid.Certificates[0]) {
		tb.Fatalf("secret %q carries %s (serial %s), want %s (serial %s)", secret.GetName(),
			got.ID, got.Certificates[0].SerialNumber, svid.ID, svid.Certificates[0].SerialNumber)
	}
}

// checkTrustedCA checks that secret is a validation_context whose trusted_ca
// holds exactly the authorities of bundle.
func checkTrustedCA(tb testing.TB, secret *tlsv3.Secret, bundle *x509bundle.Bundle) {
	tb.Helper()
	vc := secret.GetValidationContext()
	if vc == nil || vc.GetTrustedCa() == nil {
		tb.Fatalf("secret %q has no validation_context.trusted_ca: %v", secret.GetName(), secret)
	}
	checkPEMBundle(tb, secret.GetName(), vc.GetTrustedCa().GetInlineBytes(), bundle)
}

func checkPEMBundle(tb testing.TB, name string, pemBytes []byte, bundle *x509bundle.Bundle) {
	tb.Helper()
	got, err := x509bundle.Parse(bundle.TrustDomain(), pemBytes)
	if err != nil {
		tb.Fatalf("secret %q: parsing bundle: %v", name, err)
	}
	if !got.Equal(bundle) {
		tb.Fatalf("secret %q: bundle of %s has %d authorities, not those of the source (%d)", name,
			bundle.TrustDomain(), len(got.X509Authorities()), len(bundle.X509Authorities()))
	}
}

// checkSPIFFEValidator checks that secret configures Envoy's SPIFFE
// validator with exactly bundles, in order.
func checkSPIFFEValidator(tb testing.TB, secret *tlsv3.Secret, bundles ...*x509bundle.Bundle) {
	tb.Helper()
	custom := secret.GetValidationContext().GetCustomValidatorConfig()
	if custom.GetName() != server.SPIFFEValidatorName {
		tb.Fatalf("secret %q: custom validator %q, want %q", secret.GetName(), custom.GetName(), server.SPIFFEValidatorName)
	}
	cfg := &tlsv3.SPIFFECertValidatorConfig{}
	if err := custom.GetTypedConfig().UnmarshalTo(cfg); err != nil {
		tb.Fatalf("secret %q: decoding SPIFFE validator config: %v", secret.GetName(), err)
	}
	if err := cfg.ValidateAll(); err != nil {
		tb.Fatalf("secret %q: invalid SPIFFE validator config: %v", secret.GetName(), err)
	}
	var gotTDs, wantTDs []string
	for _, td := range cfg.GetTrustDomains() {
		gotTDs = append(gotTDs, td.GetName())
	}
	for _, b := range bundles {
		wantTDs = append(wantTDs, b.TrustDomain().Name())
	}
	if diff := cmp.Diff(wantTDs, gotTDs); diff != "" {
		tb.Fatalf("secret %q: trust domains (-want +got):\n%s", secret.GetName(), diff)
	}
	for i, td := range cfg.GetTrustDomains() {
		checkPEMBundle(tb, secret.GetName(), td.GetTrustBundle().GetInlineBytes(), bundles[i])
	}
}

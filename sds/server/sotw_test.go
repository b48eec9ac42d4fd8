package server_test

import (
	"errors"
	"os"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/sds/internal/sdstest"
	"github.com/signet-mesh/signet/sds/server"
)

func TestStreamFirstResponse(t *testing.T) {
	h := newHarness(t)
	all := []string{"default", "ROOTCA", "ALL", "spiffe://example.org", "spiffe://federated.test", "spiffe://example.org/db"}
	s := h.openStream(all...)
	resp := s.recv(replyTimeout)

	if resp.GetTypeUrl() != server.SecretTypeURL {
		t.Errorf("type_url = %q, want %q", resp.GetTypeUrl(), server.SecretTypeURL)
	}
	if resp.GetVersionInfo() == "" || resp.GetNonce() == "" {
		t.Errorf("version_info %q, nonce %q: want both set", resp.GetVersionInfo(), resp.GetNonce())
	}
	wantNames(t, resp.GetResources(), all...)
	secrets := decode(t, resp.GetResources())
	tests := []struct {
		name  string
		check func(*testing.T, *tlsv3.Secret)
	}{
		{"default", func(t *testing.T, s *tlsv3.Secret) { checkTLSCertificate(t, s, h.web) }},
		{"spiffe://example.org/db", func(t *testing.T, s *tlsv3.Secret) { checkTLSCertificate(t, s, h.db) }},
		{"ROOTCA", func(t *testing.T, s *tlsv3.Secret) { checkTrustedCA(t, s, h.own) }},
		{"spiffe://example.org", func(t *testing.T, s *tlsv3.Secret) { checkTrustedCA(t, s, h.own) }},
		{"spiffe://federated.test", func(t *testing.T, s *tlsv3.Secret) { checkTrustedCA(t, s, h.fdb) }},
		{"ALL", func(t *testing.T, s *tlsv3.Secret) { checkSPIFFEValidator(t, s, h.own, h.fdb) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secret := secrets[tt.name]
			if err := secret.ValidateAll(); err != nil {
				t.Fatalf("secret fails Envoy's validation rules: %v", err)
			}
			tt.check(t, secret)
		})
	}

	// The caller was attested from its kernel credentials, and the source
	// was asked for exactly the attestor's selectors.
	calls := h.att.Calls()
	if len(calls) != 1 || calls[0].PID != int32(os.Getpid()) {
		t.Errorf("attestor calls = %+v, want one for pid %d", calls, os.Getpid())
	}
	if diff := cmp.Diff([][]string{{"unix:uid:1000"}}, h.src.Selectors()); diff != "" {
		t.Errorf("subscribed selectors (-want +got):\n%s", diff)
	}
}

func TestStreamACK(t *testing.T) {
	h := newHarness(t)
	s := h.openStream("default", "ROOTCA")
	first := s.recv(replyTimeout)
	s.ack(first, "default", "ROOTCA")
	s.expectNone() // an ACK is not answered; nothing changed

	if got := h.logs.Find("client acknowledged secrets"); len(got) != 1 || got[0]["version"] != first.GetVersionInfo() {
		t.Fatalf("ACK logs = %v, want one at version %q", got, first.GetVersionInfo())
	}

	h.rotateWeb()
	second := s.recv(pushDeadline)
	wantNames(t, second.GetResources(), "default")
	if second.GetVersionInfo() == first.GetVersionInfo() || second.GetNonce() == first.GetNonce() {
		t.Errorf("after rotation: version %q nonce %q, want both different from %q %q",
			second.GetVersionInfo(), second.GetNonce(), first.GetVersionInfo(), first.GetNonce())
	}
}

func TestStreamNACK(t *testing.T) {
	h := newHarness(t)
	s := h.openStream("default")
	first := s.recv(replyTimeout)
	s.ack(first, "default")
	h.waitLogged("client acknowledged secrets", 1)

	h.rotateWeb()
	second := s.recv(pushDeadline)
	s.nack(second, first.GetVersionInfo(), "default")
	// The rejected secret is not resent: the client would only reject it
	// again.
	s.expectNone()

	if got := h.nacks.Load(); got != 1 {
		t.Errorf("NACKs counted = %d, want 1", got)
	}
	// The server stays at the last acknowledged version.
	rejected := h.logs.Find("client rejected secrets")
	if len(rejected) != 1 {
		t.Fatalf("NACK logs = %v, want one", rejected)
	}
	if got := rejected[0]["acked_version"]; got != first.GetVersionInfo() {
		t.Errorf("acked version after NACK = %q, want the last good %q", got, first.GetVersionInfo())
	}
	if got := rejected[0]["nonce"]; got != second.GetNonce() {
		t.Errorf("rejected nonce = %q, want %q", got, second.GetNonce())
	}

	// The next change is pushed as usual.
	h.rotateWeb()
	third := s.recv(pushDeadline)
	checkTLSCertificate(t, decode(t, third.GetResources())["default"], h.web)
}

func TestStreamStaleNonce(t *testing.T) {
	h := newHarness(t)
	s := h.openStream("default")
	first := s.recv(replyTimeout)
	h.rotateWeb()
	second := s.recv(pushDeadline)

	// A request answering the older response (here: asking for ROOTCA too,
	// and NACKing) was sent before the client saw the newer one: ignored.
	s.nack(first, "", "default", "ROOTCA")
	s.expectNone()
	if got := h.nacks.Load(); got != 0 {
		t.Errorf("NACKs counted for a stale nonce = %d, want 0", got)
	}

	// The request answering the latest response is honoured.
	s.ack(second, "default", "ROOTCA")
	third := s.recv(replyTimeout)
	wantNames(t, third.GetResources(), "ROOTCA")
}

func TestStreamResubscribe(t *testing.T) {
	h := newHarness(t)
	s := h.openStream("default")
	first := s.recv(replyTimeout)
	wantNames(t, first.GetResources(), "default")

	// Adding names sends only the newly requested secrets.
	s.ack(first, "default", "ROOTCA", "spiffe://example.org/db")
	second := s.recv(replyTimeout)
	wantNames(t, second.GetResources(), "ROOTCA", "spiffe://example.org/db")
	if second.GetVersionInfo() == first.GetVersionInfo() {
		t.Errorf("version_info did not change with the subscribed set: %q", second.GetVersionInfo())
	}

	// Dropping a name sends nothing, and its changes are no longer pushed.
	s.ack(second, "ROOTCA", "spiffe://example.org/db")
	s.expectNone()
	h.rotateWeb()
	s.expectNone()

	// Asking for it again sends it again.
	s.ack(second, "ROOTCA", "spiffe://example.org/db", "default")
	third := s.recv(replyTimeout)
	wantNames(t, third.GetResources(), "default")
	checkTLSCertificate(t, decode(t, third.GetResources())["default"], h.web)
}

func TestStreamPushOnRotation(t *testing.T) {
	h := newHarness(t)
	certs := h.openStream("default")
	roots := h.openStream("ROOTCA")
	s := h.openStream("spiffe://example.org/db")
	certs.ack(certs.recv(replyTimeout), "default")
	roots.ack(roots.recv(replyTimeout), "ROOTCA")
	s.ack(s.recv(replyTimeout), "spiffe://example.org/db")

	start := time.Now()
	h.rotateWeb()
	resp := certs.recv(pushDeadline)
	t.Logf("rotation reached the stream in %v", time.Since(start))
	wantNames(t, resp.GetResources(), "default")
	checkTLSCertificate(t, decode(t, resp.GetResources())["default"], h.web)

	// Streams that do not watch the rotated SVID hear nothing.
	roots.expectNone()
	s.expectNone()
}

func TestStreamPushOnBundleChange(t *testing.T) {
	h := newHarness(t)
	watch := func(name string) *sotw {
		s := h.openStream(name)
		s.ack(s.recv(replyTimeout), name)
		return s
	}
	rootca, all, own, fed, cert := watch("ROOTCA"), watch("ALL"), watch("spiffe://example.org"), watch("spiffe://federated.test"), watch("default")

	// A new root enters the own bundle (root rotation, "prepare").
	h.own = h.own.Clone()
	h.own.AddX509Authority(sdstest.NewCA(t, "example.org").Root)
	h.publish()
	checkTrustedCA(t, decode(t, rootca.recv(pushDeadline).GetResources())["ROOTCA"], h.own)
	checkSPIFFEValidator(t, decode(t, all.recv(pushDeadline).GetResources())["ALL"], h.own, h.fdb)
	checkTrustedCA(t, decode(t, own.recv(pushDeadline).GetResources())["spiffe://example.org"], h.own)
	fed.expectNone()
	cert.expectNone()

	// A federated bundle changes: only the streams that include it.
	h.fdb = h.fdb.Clone()
	h.fdb.AddX509Authority(sdstest.NewCA(t, "federated.test").Root)
	h.publish()
	checkSPIFFEValidator(t, decode(t, all.recv(pushDeadline).GetResources())["ALL"], h.own, h.fdb)
	checkTrustedCA(t, decode(t, fed.recv(pushDeadline).GetResources())["spiffe://federated.test"], h.fdb)
	rootca.expectNone()
	own.expectNone()
}

// TestStreamNotEntitled checks the documented behaviour for names the caller
// may not have: they are left out of responses (SotW cannot say "does not
// exist"), logged once, and sent as soon as they become available.
func TestStreamNotEntitled(t *testing.T) {
	h := newHarness(t)
	s := h.openStream("default", "spiffe://example.org/api", "spiffe://other.test", "not-a-secret")
	first := s.recv(replyTimeout)
	wantNames(t, first.GetResources(), "default")
	s.ack(first, "default", "spiffe://example.org/api", "spiffe://other.test", "not-a-secret")
	s.expectNone()

	absent := h.logs.Find("requested secret not available to caller")
	var got []string
	for _, a := range absent {
		got = append(got, a["resource"])
	}
	if diff := cmp.Diff([]string{"spiffe://example.org/api", "spiffe://other.test"}, got); diff != "" {
		t.Errorf("logged unavailable secrets (-want +got):\n%s", diff)
	}
	if bad := h.logs.Find("requested resource is not a secret name"); len(bad) != 1 || bad[0]["resource"] != "not-a-secret" {
		t.Errorf("invalid-name logs = %v, want one for not-a-secret", bad)
	}

	// The caller becomes entitled (a registration entry was added): the
	// secret springs into existence and is pushed.
	api := h.ca.SVID(t, "/api")
	h.db = api
	h.publish()
	resp := s.recv(pushDeadline)
	wantNames(t, resp.GetResources(), "spiffe://example.org/api")
	checkTLSCertificate(t, decode(t, resp.GetResources())["spiffe://example.org/api"], api)
}

func TestStreamAttestationFailure(t *testing.T) {
	h := newHarness(t)
	h.att.Err = errors.New("process exited")
	s := h.openStream("default")
	if code := status.Code(s.wantErr()); code != codes.PermissionDenied {
		t.Fatalf("stream error code = %v, want PermissionDenied", code)
	}
	if n := h.src.Subscribers(); n != 0 {
		t.Errorf("%d subscriptions left open, want 0", n)
	}
}

func TestStreamWrongTypeURL(t *testing.T) {
	h := newHarness(t)
	stream, err := h.client.StreamSecrets(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster", ResourceNames: []string{"default"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("error = %v, want InvalidArgument", err)
	}
}

// TestStreamClosesSubscription checks that a stream gives its subscription
// back when the client goes away, so the cache does not leak watchers.
func TestStreamClosesSubscription(t *testing.T) {
	h := newHarness(t)
	stream, err := h.client.StreamSecrets(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{ResourceNames: []string{"default"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	h.src.WaitSubscribers(t, 1)
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	h.src.WaitSubscribers(t, 0)
}

package server_test

import (
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/signet-mesh/signet/sds/server"
)

// delta is a raw DeltaSecrets client with a background reader.
type delta struct {
	t      *testing.T
	stream grpc.BidiStreamingClient[discoveryv3.DeltaDiscoveryRequest, discoveryv3.DeltaDiscoveryResponse]
	resps  chan *discoveryv3.DeltaDiscoveryResponse
	errc   chan error
}

// openDelta opens a delta stream with a first request.
func (h *harness) openDelta(first *discoveryv3.DeltaDiscoveryRequest) *delta {
	h.t.Helper()
	stream, err := h.client.DeltaSecrets(h.t.Context())
	if err != nil {
		h.t.Fatalf("opening delta stream: %v", err)
	}
	d := &delta{t: h.t, stream: stream, resps: make(chan *discoveryv3.DeltaDiscoveryResponse, 16), errc: make(chan error, 1)}
	go func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				d.errc <- err
				return
			}
			d.resps <- resp
		}
	}()
	first.TypeUrl = server.SecretTypeURL
	d.send(first)
	return d
}

func (d *delta) send(req *discoveryv3.DeltaDiscoveryRequest) {
	d.t.Helper()
	if err := d.stream.Send(req); err != nil && !errors.Is(err, io.EOF) { // io.EOF: see sotw.send
		d.t.Fatalf("sending delta request: %v", err)
	}
}

func (d *delta) ack(resp *discoveryv3.DeltaDiscoveryResponse) {
	d.t.Helper()
	d.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: server.SecretTypeURL, ResponseNonce: resp.GetNonce()})
}

func (d *delta) recv(timeout time.Duration) *discoveryv3.DeltaDiscoveryResponse {
	d.t.Helper()
	select {
	case resp := <-d.resps:
		return resp
	case err := <-d.errc:
		d.t.Fatalf("delta stream ended while waiting for a response: %v", err)
	case <-time.After(timeout):
		d.t.Fatalf("no delta response within %v", timeout)
	}
	return nil
}

func (d *delta) expectNone() {
	d.t.Helper()
	select {
	case resp := <-d.resps:
		d.t.Fatalf("unexpected delta response: resources %v removed %v", deltaNames(resp), resp.GetRemovedResources())
	case err := <-d.errc:
		d.t.Fatalf("delta stream ended: %v", err)
	case <-time.After(quiet):
	}
}

// deltaNames lists the names of the resources of resp, sorted.
func deltaNames(resp *discoveryv3.DeltaDiscoveryResponse) []string {
	var out []string
	for _, r := range resp.GetResources() {
		out = append(out, r.GetName())
	}
	slices.Sort(out)
	return out
}

// deltaSecrets decodes the resources of resp, checking that each resource's
// name matches its secret's and that it has a version.
func deltaSecrets(tb testing.TB, resp *discoveryv3.DeltaDiscoveryResponse) map[string]*tlsv3.Secret {
	tb.Helper()
	out := make(map[string]*tlsv3.Secret)
	for _, r := range resp.GetResources() {
		secrets := decode(tb, []*anypb.Any{r.GetResource()})
		s, ok := secrets[r.GetName()]
		if !ok {
			tb.Fatalf("resource %q holds secret(s) %v", r.GetName(), secrets)
		}
		if r.GetVersion() == "" {
			tb.Fatalf("resource %q has no version", r.GetName())
		}
		out[r.GetName()] = s
	}
	return out
}

// wantDelta checks the resource names and removed names of resp.
func wantDelta(tb testing.TB, resp *discoveryv3.DeltaDiscoveryResponse, resources, removed []string) {
	tb.Helper()
	slices.Sort(resources)
	if diff := cmp.Diff(resources, deltaNames(resp)); diff != "" {
		tb.Errorf("resources (-want +got):\n%s", diff)
	}
	got := slices.Sorted(slices.Values(resp.GetRemovedResources()))
	slices.Sort(removed)
	if diff := cmp.Diff(removed, got); diff != "" {
		tb.Errorf("removed_resources (-want +got):\n%s", diff)
	}
	if resp.GetNonce() == "" || resp.GetTypeUrl() != server.SecretTypeURL {
		tb.Errorf("nonce %q type_url %q: want a nonce and %q", resp.GetNonce(), resp.GetTypeUrl(), server.SecretTypeURL)
	}
}

func versions(resp *discoveryv3.DeltaDiscoveryResponse) map[string]string {
	out := make(map[string]string)
	for _, r := range resp.GetResources() {
		out[r.GetName()] = r.GetVersion()
	}
	return out
}

// TestDeltaInitial checks the first response: available secrets in
// resources, and names the caller may not have in removed_resources, which
// is how the incremental protocol says "does not exist".
func TestDeltaInitial(t *testing.T) {
	h := newHarness(t)
	d := h.openDelta(&discoveryv3.DeltaDiscoveryRequest{
		ResourceNamesSubscribe: []string{"default", "ROOTCA", "ALL", "spiffe://example.org/api", "not-a-secret"},
	})
	resp := d.recv(replyTimeout)
	wantDelta(t, resp, []string{"default", "ROOTCA", "ALL"}, []string{"spiffe://example.org/api", "not-a-secret"})
	secrets := deltaSecrets(t, resp)
	checkTLSCertificate(t, secrets["default"], h.web)
	checkTrustedCA(t, secrets["ROOTCA"], h.own)
	checkSPIFFEValidator(t, secrets["ALL"], h.own, h.fdb)
	if resp.GetSystemVersionInfo() == "" {
		t.Error("system_version_info is empty")
	}

	// The absent names were answered once; an ACK brings nothing new.
	d.ack(resp)
	d.expectNone()
}

func TestDeltaUpdate(t *testing.T) {
	h := newHarness(t)
	d := h.openDelta(&discoveryv3.DeltaDiscoveryRequest{ResourceNamesSubscribe: []string{"default", "ROOTCA"}})
	first := d.recv(replyTimeout)
	d.ack(first)

	h.rotateWeb()
	second := d.recv(pushDeadline)
	wantDelta(t, second, []string{"default"}, nil)
	checkTLSCertificate(t, deltaSecrets(t, second)["default"], h.web)
	if v1, v2 := versions(first)["default"], versions(second)["default"]; v1 == v2 {
		t.Errorf("default kept version %q across a rotation", v1)
	}

	// NACK: counted, not resent.
	d.send(&discoveryv3.DeltaDiscoveryRequest{
		ResponseNonce: second.GetNonce(),
		ErrorDetail:   &status.Status{Code: int32(codes.InvalidArgument), Message: "test rejects this"},
	})
	d.expectNone()
	if got := h.nacks.Load(); got != 1 {
		t.Errorf("NACKs counted = %d, want 1", got)
	}
}

func TestDeltaUnsubscribeAndRemove(t *testing.T) {
	h := newHarness(t)
	d := h.openDelta(&discoveryv3.DeltaDiscoveryRequest{ResourceNamesSubscribe: []string{"ROOTCA", "spiffe://example.org/db"}})
	d.ack(d.recv(replyTimeout))

	// Unsubscribing needs no answer, and stops pushes of that secret.
	d.send(&discoveryv3.DeltaDiscoveryRequest{ResourceNamesUnsubscribe: []string{"ROOTCA", "never-subscribed"}})
	d.expectNone()
	h.own = h.own.Clone()
	h.own.AddX509Authority(h.fed.Root)
	h.publish()
	d.expectNone()

	// The caller loses its db identity (its entry was deleted): the secret
	// is removed.
	h.db = nil
	h.publish()
	resp := d.recv(pushDeadline)
	wantDelta(t, resp, nil, []string{"spiffe://example.org/db"})
	d.ack(resp)

	// It comes back: sent again.
	h.db = h.ca.SVID(t, "/db")
	h.publish()
	resp = d.recv(pushDeadline)
	wantDelta(t, resp, []string{"spiffe://example.org/db"}, nil)
	checkTLSCertificate(t, deltaSecrets(t, resp)["spiffe://example.org/db"], h.db)
}

// TestDeltaInitialResourceVersions checks a reconnecting client: what it
// already has at the current version is not resent, stale secrets are, and
// secrets that no longer exist are removed.
func TestDeltaInitialResourceVersions(t *testing.T) {
	h := newHarness(t)
	d := h.openDelta(&discoveryv3.DeltaDiscoveryRequest{ResourceNamesSubscribe: []string{"default", "ROOTCA"}})
	have := versions(d.recv(replyTimeout))

	again := h.openDelta(&discoveryv3.DeltaDiscoveryRequest{
		ResourceNamesSubscribe: []string{"default", "ROOTCA", "spiffe://example.org/gone"},
		InitialResourceVersions: map[string]string{
			"default":                   have["default"],
			"ROOTCA":                    "0000000000000000",
			"spiffe://example.org/gone": have["default"],
		},
	})
	resp := again.recv(replyTimeout)
	wantDelta(t, resp, []string{"ROOTCA"}, []string{"spiffe://example.org/gone"})
	if got := versions(resp)["ROOTCA"]; got != have["ROOTCA"] {
		t.Errorf("ROOTCA version = %q, want %q (same content, same version)", got, have["ROOTCA"])
	}
}

// TestDeltaSubscriptionWithStaleNonce checks that subscription changes are
// applied even when the request carries a stale nonce, as the protocol
// requires, and that re-subscribing resends.
func TestDeltaSubscriptionWithStaleNonce(t *testing.T) {
	h := newHarness(t)
	d := h.openDelta(&discoveryv3.DeltaDiscoveryRequest{ResourceNamesSubscribe: []string{"default"}})
	first := d.recv(replyTimeout)
	h.rotateWeb()
	second := d.recv(pushDeadline)

	d.send(&discoveryv3.DeltaDiscoveryRequest{ResponseNonce: first.GetNonce(), ResourceNamesSubscribe: []string{"ROOTCA", "default"}})
	third := d.recv(replyTimeout)
	wantDelta(t, third, []string{"ROOTCA", "default"}, nil)
	if got, want := versions(third)["default"], versions(second)["default"]; got != want {
		t.Errorf("resent default at version %q, want the current %q", got, want)
	}
}

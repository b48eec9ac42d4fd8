package server_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/internal/clock"
	"github.com/signet-mesh/signet/sds/internal/sdstest"
	"github.com/signet-mesh/signet/sds/server"
)

func TestFetchSecrets(t *testing.T) {
	h := newHarness(t)
	resp, err := h.client.FetchSecrets(t.Context(), &discoveryv3.DiscoveryRequest{
		TypeUrl:       server.SecretTypeURL,
		ResourceNames: []string{"default", "ROOTCA", "default"},
	})
	if err != nil {
		t.Fatalf("FetchSecrets: %v", err)
	}
	wantNames(t, resp.GetResources(), "default", "ROOTCA")
	secrets := decode(t, resp.GetResources())
	checkTLSCertificate(t, secrets["default"], h.web)
	checkTrustedCA(t, secrets["ROOTCA"], h.own)
	if resp.GetVersionInfo() == "" || resp.GetNonce() == "" {
		t.Errorf("version_info %q nonce %q: want both set", resp.GetVersionInfo(), resp.GetNonce())
	}

	// The same content has the same version on a stream.
	s := h.openStream("default", "ROOTCA")
	if got := s.recv(replyTimeout).GetVersionInfo(); got != resp.GetVersionInfo() {
		t.Errorf("stream version %q, fetch version %q: want equal for equal content", got, resp.GetVersionInfo())
	}
	if n := h.src.Subscribers(); n != 1 {
		t.Errorf("%d subscriptions open, want 1 (the stream's; Fetch closes its own)", n)
	}
}

func TestFetchSecretsErrors(t *testing.T) {
	tests := []struct {
		name       string
		names      []string
		typeURL    string
		attestErr  error
		wantCode   codes.Code
		wantSubstr string
	}{
		{name: "not entitled", names: []string{"default", "spiffe://example.org/api"}, wantCode: codes.NotFound, wantSubstr: "spiffe://example.org/api"},
		{name: "unknown trust domain", names: []string{"spiffe://other.test"}, wantCode: codes.NotFound, wantSubstr: "not entitled"},
		{name: "not a secret name", names: []string{"default", "bogus"}, wantCode: codes.InvalidArgument, wantSubstr: `"bogus" is not a secret name`},
		{name: "no names", names: nil, wantCode: codes.InvalidArgument, wantSubstr: "resource_names is empty"},
		{name: "wrong type", names: []string{"default"}, typeURL: "type.googleapis.com/envoy.config.listener.v3.Listener", wantCode: codes.InvalidArgument, wantSubstr: "type_url"},
		{name: "attestation fails", names: []string{"default"}, attestErr: errors.New("no such process"), wantCode: codes.PermissionDenied, wantSubstr: "attestation failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.att.Err = tt.attestErr
			_, err := h.client.FetchSecrets(t.Context(), &discoveryv3.DiscoveryRequest{TypeUrl: tt.typeURL, ResourceNames: tt.names})
			if status.Code(err) != tt.wantCode || !strings.Contains(status.Convert(err).Message(), tt.wantSubstr) {
				t.Fatalf("error = %v, want code %v containing %q", err, tt.wantCode, tt.wantSubstr)
			}
			if strings.Contains(err.Error(), "no such process") {
				t.Errorf("error %q leaks the attestor's internal error", err)
			}
		})
	}
}

// TestFetchSecretsBeforeFirstSnapshot checks that Fetch does not hang on an
// agent that has no state yet: it gives up after a bounded wait.
func TestFetchSecretsBeforeFirstSnapshot(t *testing.T) {
	clk := clock.NewFake(time.Now())
	srv := server.New(server.Config{Source: sdstest.NewSource(), Attestor: &sdstest.Attestor{}, Clock: clk})
	path := filepath.Join(t.TempDir(), "sds.sock")
	sdstest.Serve(t, path, srv)
	client := secretv3.NewSecretDiscoveryServiceClient(dial(t, path))

	errc := make(chan error, 1)
	go func() {
		_, err := client.FetchSecrets(t.Context(), &discoveryv3.DiscoveryRequest{ResourceNames: []string{"default"}})
		errc <- err
	}()
	deadline := time.Now().Add(replyTimeout)
	for clk.Waiters() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("FetchSecrets never started waiting")
		}
		time.Sleep(time.Millisecond)
	}
	clk.Advance(time.Minute)
	select {
	case err := <-errc:
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("error = %v, want Unavailable", err)
		}
	case <-time.After(replyTimeout):
		t.Fatal("FetchSecrets did not return after the wait expired")
	}
}

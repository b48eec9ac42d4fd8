package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"

	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

// fakeFederation plays the CA's FederationService for the CLI tests: it
// records the last request of each call and knows other.org.
type fakeFederation struct {
	adminv1.UnimplementedFederationServiceServer
	fedMu   sync.Mutex
	fedReqs map[string]any
}

func (f *fakeFederation) recordFed(name string, m any) {
	f.fedMu.Lock()
	defer f.fedMu.Unlock()
	if f.fedReqs == nil {
		f.fedReqs = map[string]any{}
	}
	f.fedReqs[name] = m
}

func (f *fakeFederation) lastFed(name string) any {
	f.fedMu.Lock()
	defer f.fedMu.Unlock()
	return f.fedReqs[name]
}

var fakeRelationship = &adminv1.FederationRelationship{
	TrustDomain: "other.org", BundleEndpointUrl: "https://127.0.0.1:8443", Profile: "https_spiffe",
	EndpointSpiffeId: "spiffe://other.org/signet/server", CreatedAt: fakeExpiry - 100, Sequence: 7,
	RefreshHintSeconds: 300, X509Authorities: 1, BundleUpdatedAt: fakeExpiry - 50, LastRefreshAt: fakeExpiry - 10,
	NextRefreshAt: fakeExpiry + 290, Bundle: []byte(`{"keys":[],"spiffe_sequence":7}`),
}

func (f *fakeFederation) CreateFederation(_ context.Context, r *adminv1.CreateFederationRequest) (*adminv1.CreateFederationResponse, error) {
	f.recordFed("CreateFederation", r)
	return &adminv1.CreateFederationResponse{Relationship: fakeRelationship}, nil
}

func (f *fakeFederation) ListFederations(_ context.Context, r *adminv1.ListFederationsRequest) (*adminv1.ListFederationsResponse, error) {
	f.recordFed("ListFederations", r)
	return &adminv1.ListFederationsResponse{Relationships: []*adminv1.FederationRelationship{fakeRelationship}}, nil
}

func (f *fakeFederation) GetFederation(_ context.Context, r *adminv1.GetFederationRequest) (*adminv1.GetFederationResponse, error) {
	f.recordFed("GetFederation", r)
	if r.TrustDomain != "other.org" {
		return nil, status.Error(codes.NotFound, "federation: no such federation relationship: "+r.TrustDomain)
	}
	return &adminv1.GetFederationResponse{Relationship: fakeRelationship}, nil
}

func (f *fakeFederation) DeleteFederation(_ context.Context, r *adminv1.DeleteFederationRequest) (*adminv1.DeleteFederationResponse, error) {
	f.recordFed("DeleteFederation", r)
	return &adminv1.DeleteFederationResponse{}, nil
}

func (f *fakeFederation) RefreshFederation(_ context.Context, r *adminv1.RefreshFederationRequest) (*adminv1.RefreshFederationResponse, error) {
	f.recordFed("RefreshFederation", r)
	return &adminv1.RefreshFederationResponse{Relationship: fakeRelationship, Updated: true}, nil
}

// TestFederationCreate: the flags become the request, the bundle file's
// content goes with it, and bad combinations never reach the server.
func TestFederationCreate(t *testing.T) {
	bundleFile := filepath.Join(t.TempDir(), "initial.pem")
	if err := os.WriteFile(bundleFile, []byte("-----BEGIN CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"federation", "create", "--trust-domain", "other.org", "--bundle-endpoint-url", "https://b.other.org"}
	tests := []struct {
		name    string
		args    []string
		want    *adminv1.CreateFederationRequest
		wantErr string
	}{
		{
			name: "https_spiffe",
			args: append(base[:len(base):len(base)], "--profile", "https_spiffe", "--endpoint-spiffe-id", "spiffe://other.org/signet/server", "--bundle-file", bundleFile),
			want: &adminv1.CreateFederationRequest{TrustDomain: "other.org", BundleEndpointUrl: "https://b.other.org", Profile: "https_spiffe",
				EndpointSpiffeId: "spiffe://other.org/signet/server", InitialBundle: []byte("-----BEGIN CERTIFICATE-----\n")},
		},
		{
			name: "https_web",
			args: append(base[:len(base):len(base)], "--profile", "https_web"),
			want: &adminv1.CreateFederationRequest{TrustDomain: "other.org", BundleEndpointUrl: "https://b.other.org", Profile: "https_web"},
		},
		{name: "web with id", args: append(base[:len(base):len(base)], "--profile", "https_web", "--endpoint-spiffe-id", "spiffe://other.org/x"), wantErr: "--endpoint-spiffe-id is only for --profile https_spiffe"},
		{name: "spiffe without id", args: base, wantErr: "--endpoint-spiffe-id is required"},
		{name: "unknown profile", args: append(base[:len(base):len(base)], "--profile", "http"), wantErr: "unknown profile"},
		{name: "no trust domain", args: []string{"federation", "create", "--bundle-endpoint-url", "https://x", "--profile", "https_web"}, wantErr: "--trust-domain is required"},
		{name: "missing bundle file", args: append(base[:len(base):len(base)], "--endpoint-spiffe-id", "spiffe://other.org/s", "--bundle-file", "/nonexistent/b.pem"), wantErr: "--bundle-file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeAdmin{}
			env, _, _ := serveAdmin(t, f)
			_, _, err := runCLI(t, env, "", tt.args...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				if f.lastFed("CreateFederation") != nil {
					t.Fatal("bad input reached the server")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, f.lastFed("CreateFederation"), protocmp.Transform()); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
		})
	}
}

// TestFederationShowRefreshDelete: show -o json carries the relationship
// and its bundle document; refresh and delete name the trust domain.
func TestFederationShowRefreshDelete(t *testing.T) {
	f := &fakeAdmin{}
	env, _, _ := serveAdmin(t, f)
	out, _, err := runCLI(t, env, "", "federation", "show", "other.org", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("show -o json: %v\n%s", err, out)
	}
	if got["trust_domain"] != "other.org" || got["sequence"] != float64(7) || got["refresh_hint"] != "5m0s" || got["profile"] != "https_spiffe" {
		t.Errorf("show -o json = %v", got)
	}
	if b, ok := got["bundle"].(map[string]any); !ok || b["spiffe_sequence"] != float64(7) {
		t.Errorf("show -o json bundle = %v, want the SPIFFE bundle document", got["bundle"])
	}
	if out, _, err := runCLI(t, env, "", "federation", "show", "other.org"); err != nil || !strings.Contains(out, "spiffe://other.org/signet/server") {
		t.Errorf("show: %v\n%s", err, out)
	}
	if _, _, err := runCLI(t, env, "", "federation", "show", "nope.org"); err == nil || !strings.Contains(err.Error(), "no such federation relationship") {
		t.Errorf("show of an unknown domain: %v", err)
	}
	out, _, err = runCLI(t, env, "", "federation", "refresh", "other.org", "-o", "json")
	if err != nil || !strings.Contains(out, `"updated": true`) {
		t.Errorf("refresh -o json: %v\n%s", err, out)
	}
	if _, _, err := runCLI(t, env, "", "federation", "delete", "other.org"); err != nil {
		t.Fatal(err)
	}
	if r, _ := f.lastFed("DeleteFederation").(*adminv1.DeleteFederationRequest); r.GetTrustDomain() != "other.org" {
		t.Errorf("delete request %v", r)
	}
	if _, _, err := runCLI(t, env, "", "federation", "delete"); err == nil {
		t.Error("delete without a trust domain succeeded")
	}
}

// TestEntryFederatesWith: --federates-with (repeatable) and the file's
// federates_with reach the request; update replaces or clears the list.
func TestEntryFederatesWith(t *testing.T) {
	f := &fakeAdmin{}
	env, _, _ := serveAdmin(t, f)
	if _, _, err := runCLI(t, env, "", "entry", "create", "--spiffe-id", "spiffe://example.org/a", "--parent-id", "p", "--selector", "unix:uid:1",
		"--federates-with", "other.org", "--federates-with", "third.org"); err != nil {
		t.Fatal(err)
	}
	req, _ := f.last("CreateEntries").(*adminv1.CreateEntriesRequest)
	if got := req.GetEntries()[0].GetFederatesWith(); !cmp.Equal(got, []string{"other.org", "third.org"}) {
		t.Errorf("federates_with %v, want other.org and third.org", got)
	}
	file := "- spiffe_id: spiffe://example.org/b\n  parent_id: p\n  selectors: [unix:uid:2]\n  federates_with: [other.org]\n"
	if _, _, err := runCLI(t, env, file, "entry", "create", "--file", "-"); err != nil {
		t.Fatal(err)
	}
	req, _ = f.last("CreateEntries").(*adminv1.CreateEntriesRequest)
	if got := req.GetEntries()[0].GetFederatesWith(); !cmp.Equal(got, []string{"other.org"}) {
		t.Errorf("file: federates_with %v, want other.org", got)
	}
	if _, _, err := runCLI(t, env, "", "entry", "update", "e-1", "--clear-federates-with"); err != nil {
		t.Fatal(err)
	}
	up, _ := f.last("UpdateEntry").(*adminv1.UpdateEntryRequest)
	if up.GetFederatesWith() == nil || len(up.GetFederatesWith().GetValues()) != 0 {
		t.Errorf("--clear-federates-with: %v, want a present empty list", up.GetFederatesWith())
	}
	if _, _, err := runCLI(t, env, "", "entry", "update", "e-1", "--federates-with", "a.org", "--clear-federates-with"); err == nil || !strings.Contains(err.Error(), "exclusive") {
		t.Errorf("both flags: %v", err)
	}
}

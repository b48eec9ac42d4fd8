package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/signet-mesh/signet/cmd/internal/cli"
	"github.com/signet-mesh/signet/internal/testdir"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

// fakeMTLSAdmin answers the mTLS RPCs and records the requests.
type fakeMTLSAdmin struct {
	adminv1.UnimplementedAdminServiceServer
	set    *adminv1.SetMTLSPolicyRequest
	del    *adminv1.DeleteMTLSPolicyRequest
	forced []string
	err    error
}

func (f *fakeMTLSAdmin) SetMTLSPolicy(_ context.Context, req *adminv1.SetMTLSPolicyRequest) (*adminv1.SetMTLSPolicyResponse, error) {
	f.set = req
	if f.err != nil {
		return nil, f.err
	}
	p := proto.Clone(req.Policy).(*adminv1.MTLSPolicy)
	p.Id, p.Revision = "mp-1", 9
	return &adminv1.SetMTLSPolicyResponse{Policy: p, PlaintextWorkloads: f.forced}, nil
}

func (f *fakeMTLSAdmin) ListMTLSPolicies(context.Context, *adminv1.ListMTLSPoliciesRequest) (*adminv1.ListMTLSPoliciesResponse, error) {
	return &adminv1.ListMTLSPoliciesResponse{Policies: []*adminv1.MTLSPolicy{
		{Id: "mp-0", Mode: adminv1.MTLSMode_MTLS_MODE_STRICT, ExemptPorts: []uint32{15021}, Revision: 3},
		{Id: "mp-1", Prefix: "spiffe://example.org/ns/", Mode: adminv1.MTLSMode_MTLS_MODE_STRICT, DryRun: true, Revision: 4},
		{Id: "mp-2", SpiffeId: "spiffe://example.org/web", Port: 8443, Mode: adminv1.MTLSMode_MTLS_MODE_PERMISSIVE, Revision: 5},
	}}, nil
}

func (f *fakeMTLSAdmin) DeleteMTLSPolicy(_ context.Context, req *adminv1.DeleteMTLSPolicyRequest) (*adminv1.DeleteMTLSPolicyResponse, error) {
	f.del = req
	return &adminv1.DeleteMTLSPolicyResponse{}, f.err
}

func (f *fakeMTLSAdmin) GetMTLSStatus(context.Context, *adminv1.GetMTLSStatusRequest) (*adminv1.GetMTLSStatusResponse, error) {
	return &adminv1.GetMTLSStatusResponse{WindowSeconds: 600, Workloads: []*adminv1.WorkloadMTLSStatus{
		{SpiffeId: "spiffe://example.org/api", Mode: adminv1.MTLSMode_MTLS_MODE_STRICT, MtlsConnections: 7, Ready: true},
		{SpiffeId: "spiffe://example.org/web", Mode: adminv1.MTLSMode_MTLS_MODE_STRICT, DryRun: true, MtlsConnections: 3, PlaintextConnections: 2,
			RefusedConnections: 2, PlaintextSources: []string{"10.0.0.9"}, Ports: []*adminv1.PortMTLSStatus{
				{Port: 8443, Mode: adminv1.MTLSMode_MTLS_MODE_PERMISSIVE, PlaintextConnections: 2},
				{Port: 15021, Mode: adminv1.MTLSMode_MTLS_MODE_STRICT, Exempt: true},
			}},
	}}, nil
}

// serveAdmin serves srv on a Unix socket and returns an env pointing at it.
func serveAdmin(t *testing.T, srv adminv1.AdminServiceServer) (*cliEnv, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	dir := testdir.Short(t)
	sock := filepath.Join(dir, "admin.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	adminv1.RegisterAdminServiceServer(g, srv)
	if fs, ok := srv.(adminv1.FederationServiceServer); ok {
		adminv1.RegisterFederationServiceServer(g, fs)
	}
	go g.Serve(ln)
	t.Cleanup(g.Stop)
	var stdout, stderr bytes.Buffer
	return &cliEnv{stdout: &stdout, stderr: &stderr, getenv: mapEnv(map[string]string{cli.AdminSocketEnv: sock})}, &stdout, &stderr
}

func TestMTLSSet(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    *adminv1.SetMTLSPolicyRequest
		wantErr string
	}{
		{
			name: "trust-domain default",
			args: []string{"--mode", "strict"},
			want: &adminv1.SetMTLSPolicyRequest{Policy: &adminv1.MTLSPolicy{Mode: adminv1.MTLSMode_MTLS_MODE_STRICT}},
		},
		{
			// --shadow installs STRICT in dry run (it was --dry-run before
			// --dry-run became a preview).
			name: "prefix in shadow (dry run) mode, forced",
			args: []string{"--mode", "STRICT", "--prefix", "spiffe://example.org/ns/", "--shadow", "--force"},
			want: &adminv1.SetMTLSPolicyRequest{Policy: &adminv1.MTLSPolicy{Mode: adminv1.MTLSMode_MTLS_MODE_STRICT, Prefix: "spiffe://example.org/ns/", DryRun: true}, Force: true},
		},
		{
			name: "port override and exempt ports",
			args: []string{"--mode", "PERMISSIVE", "--spiffe-id", "spiffe://example.org/web", "--exempt-port", "15021", "--exempt-port", "9090"},
			want: &adminv1.SetMTLSPolicyRequest{Policy: &adminv1.MTLSPolicy{Mode: adminv1.MTLSMode_MTLS_MODE_PERMISSIVE, SpiffeId: "spiffe://example.org/web", ExemptPorts: []uint32{15021, 9090}}},
		},
		{
			name: "port",
			args: []string{"--mode", "DISABLE", "--spiffe-id", "spiffe://example.org/web", "--port", "8080"},
			want: &adminv1.SetMTLSPolicyRequest{Policy: &adminv1.MTLSPolicy{Mode: adminv1.MTLSMode_MTLS_MODE_DISABLE, SpiffeId: "spiffe://example.org/web", Port: 8080}},
		},
		{name: "no mode", args: nil, wantErr: "--mode is required"},
		{name: "unknown mode", args: []string{"--mode", "MUTUAL"}, wantErr: `--mode "MUTUAL"`},
		{name: "two scopes", args: []string{"--mode", "STRICT", "--spiffe-id", "spiffe://example.org/a", "--prefix", "spiffe://example.org/b/"}, wantErr: "exclusive"},
		{name: "bad port", args: []string{"--mode", "STRICT", "--port", "http"}, wantErr: `--port "http"`},
		{name: "port 0", args: []string{"--mode", "STRICT", "--exempt-port", "0"}, wantErr: `--exempt-port "0"`},
		{name: "shadow without STRICT", args: []string{"--mode", "DISABLE", "--shadow"}, wantErr: "--shadow goes with --mode STRICT"},
		{name: "positional argument", args: []string{"--mode", "STRICT", "web"}, wantErr: `unexpected argument "web"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeMTLSAdmin{}
			env, stdout, _ := serveAdmin(t, f)
			err := run(context.Background(), env, append([]string{"mtls", "set"}, tt.args...))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				if f.set != nil {
					t.Fatal("bad input reached the server")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, f.set, protocmp.Transform()); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
			if !strings.Contains(stdout.String(), "mp-1") {
				t.Errorf("output does not show the policy:\n%s", stdout)
			}
		})
	}
}

func TestMTLSSetRefusedAndForced(t *testing.T) {
	f := &fakeMTLSAdmin{err: status.Error(codes.FailedPrecondition, "refusing to set STRICT on default: 1 workload(s) ... spiffe://example.org/web")}
	env, _, _ := serveAdmin(t, f)
	err := run(context.Background(), env, []string{"mtls", "set", "--mode", "STRICT"})
	if err == nil || !strings.Contains(err.Error(), "spiffe://example.org/web") {
		t.Fatalf("refused set: %v, want the server's message naming the workload", err)
	}

	f = &fakeMTLSAdmin{forced: []string{"spiffe://example.org/web"}}
	env, stdout, stderr := serveAdmin(t, f)
	if err := run(context.Background(), env, []string{"mtls", "set", "--mode", "STRICT", "--force", "-o", "json"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr.String(), "warning") || !strings.Contains(stderr.String(), "spiffe://example.org/web") {
		t.Errorf("no warning naming the workload forced over: %q", stderr)
	}
	var got mtlsPolicyJSON
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.ID != "mp-1" || got.Scope != "default" || got.Mode != "STRICT" || len(got.PlaintextWorkloads) != 1 {
		t.Errorf("json = %+v", got)
	}
}

func TestMTLSList(t *testing.T) {
	env, stdout, _ := serveAdmin(t, &fakeMTLSAdmin{})
	if err := run(context.Background(), env, []string{"mtls", "list"}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"default (trust domain)", "prefix spiffe://example.org/ns/", "STRICT (dry run)", "8443", "15021"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, stdout)
		}
	}
	stdout.Reset()
	if err := run(context.Background(), env, []string{"mtls", "list", "-o", "json"}); err != nil {
		t.Fatal(err)
	}
	var got []mtlsPolicyJSON
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Scope != "default" || got[1].Scope != "prefix" || got[2].Scope != "spiffe_id" || got[2].Port != 8443 {
		t.Errorf("json = %+v", got)
	}
}

func TestMTLSDelete(t *testing.T) {
	f := &fakeMTLSAdmin{}
	env, _, stderr := serveAdmin(t, f)
	if err := run(context.Background(), env, []string{"mtls", "delete", "mp-2", "--force"}); err != nil {
		t.Fatal(err)
	}
	if f.del.GetId() != "mp-2" || !f.del.GetForce() || !strings.Contains(stderr.String(), "deleted mTLS policy mp-2") {
		t.Errorf("delete request %v, stderr %q", f.del, stderr)
	}
	if err := run(context.Background(), env, []string{"mtls", "delete"}); err == nil || !strings.Contains(err.Error(), "ID") {
		t.Errorf("delete without ID: %v", err)
	}
}

// TestMTLSStatusJSON pins the -o json contract: an array of objects with
// spiffe_id, mode, mtls_connections, plaintext_connections and ready.
func TestMTLSStatusJSON(t *testing.T) {
	env, stdout, _ := serveAdmin(t, &fakeMTLSAdmin{})
	if err := run(context.Background(), env, []string{"mtls", "status", "-o", "json"}); err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("not a JSON array: %v\n%s", err, stdout)
	}
	if len(got) != 2 {
		t.Fatalf("%d workloads, want 2", len(got))
	}
	want := map[string]any{"spiffe_id": "spiffe://example.org/web", "mode": "STRICT", "mtls_connections": 3.0, "plaintext_connections": 2.0, "ready": false}
	for k, v := range want {
		if got[1][k] != v {
			t.Errorf("%s = %v (%T), want %v", k, got[1][k], got[1][k], v)
		}
	}
	if got[0]["ready"] != true || got[0]["plaintext_sources"] == nil || got[0]["ports"] == nil {
		t.Errorf("first workload = %v; want ready, and empty arrays rather than null", got[0])
	}

	stdout.Reset()
	if err := run(context.Background(), env, []string{"mtls", "status"}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"10m0s", "NOT READY", "READY", "STRICT (dry run), 8443:PERMISSIVE, 15021:exempt", "10.0.0.9"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, stdout)
		}
	}
}

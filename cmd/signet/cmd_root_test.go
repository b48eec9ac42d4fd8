package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/signet-mesh/signet/cmd/internal/cli"
	"github.com/signet-mesh/signet/internal/testdir"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

// fakeRootAdmin answers the root RPCs and records the requests.
type fakeRootAdmin struct {
	adminv1.UnimplementedAdminServiceServer
	auths    []*adminv1.Authority
	activate *adminv1.ActivateRootRequest
	retire   *adminv1.RetireRootRequest
	prepare  *adminv1.PrepareRootRequest
	schedule *adminv1.RootSchedule
	err      error
}

func (f *fakeRootAdmin) ListAuthorities(context.Context, *adminv1.ListAuthoritiesRequest) (*adminv1.ListAuthoritiesResponse, error) {
	return &adminv1.ListAuthoritiesResponse{Authorities: f.auths, BundleRevision: 7, RootSchedule: f.schedule}, nil
}

func (f *fakeRootAdmin) PrepareRoot(_ context.Context, req *adminv1.PrepareRootRequest) (*adminv1.PrepareRootResponse, error) {
	f.prepare = req
	if f.err != nil {
		return nil, f.err
	}
	if req.CsrOnly {
		return &adminv1.PrepareRootResponse{CsrPem: []byte("CSR PEM"), CsrKeyId: "k1"}, nil
	}
	return &adminv1.PrepareRootResponse{Authority: &adminv1.Authority{Id: "r2", Kind: "root", State: "prepared"}}, nil
}

func (f *fakeRootAdmin) ActivateRoot(_ context.Context, req *adminv1.ActivateRootRequest) (*adminv1.ActivateRootResponse, error) {
	f.activate = req
	if f.err != nil {
		return nil, f.err
	}
	return &adminv1.ActivateRootResponse{Authority: &adminv1.Authority{Id: "r2", Kind: "root", State: "active"}}, nil
}

func (f *fakeRootAdmin) RetireRoot(_ context.Context, req *adminv1.RetireRootRequest) (*adminv1.RetireRootResponse, error) {
	f.retire = req
	if f.err != nil {
		return nil, f.err
	}
	return &adminv1.RetireRootResponse{Authority: &adminv1.Authority{Id: "r1", Kind: "root", State: "retired"}}, nil
}

// serveFake serves f on a Unix socket and returns an env pointing at it.
func serveFake(t *testing.T, f *fakeRootAdmin) (*cliEnv, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	return serveFakeAdmin(t, f)
}

// serveFakeAdmin serves any fake admin service, as serveFake does.
func serveFakeAdmin(t *testing.T, f adminv1.AdminServiceServer) (*cliEnv, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	dir := testdir.Short(t)
	sock := filepath.Join(dir, "admin.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	adminv1.RegisterAdminServiceServer(srv, f)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	var stdout, stderr bytes.Buffer
	env := &cliEnv{stdout: &stdout, stderr: &stderr, getenv: func(k string) string {
		if k == cli.AdminSocketEnv {
			return sock
		}
		return ""
	}}
	return env, &stdout, &stderr
}

func i64(v int64) *int64 { return &v }

func TestRootStatusAndList(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC).Unix()
	f := &fakeRootAdmin{auths: []*adminv1.Authority{
		{Id: "r0", Kind: "root", State: "retired", KeyType: "EC-P256", NotAfter: now},
		{Id: "r1", Kind: "root", State: "retiring", KeyType: "EC-P256", NotAfter: now, UnexpiredSvids: 4, AgentsApplied: 3, ConnectedAgents: 3, ExpiringSoon: true},
		{Id: "i1", Kind: "intermediate", State: "retired", ParentId: "r1", NotAfter: now},
		{Id: "r2", Kind: "root", State: "active", KeyType: "EC-P384", NotAfter: now, UnexpiredSvids: 2, AgentsApplied: 2, ConnectedAgents: 3},
		{Id: "i2", Kind: "intermediate", State: "active", ParentId: "r2", KeyType: "EC-P256", NotAfter: now, UnexpiredSvids: 2},
		{Id: "j1", Kind: "jwt", State: "active"},
	}}
	env, stdout, _ := serveFake(t, f)
	ctx := context.Background()

	if err := run(ctx, env, []string{"root", "status"}); err != nil {
		t.Fatal(err)
	}
	want := `ID  KIND          STATE     KEY TYPE  NOT AFTER             SVIDS  AGENTS APPLIED  WARNING
r1  root          retiring  EC-P256   2030-01-02T03:04:05Z  4      3/3             EXPIRING
r2  root          active    EC-P384   2030-01-02T03:04:05Z  2      2/3             
i2  intermediate  active    EC-P256   2030-01-02T03:04:05Z  2      -               

bundle revision 7
root rotation: manual (root_rotation: auto lets the server take the steps)
`
	if diff := cmp.Diff(want, stdout.String()); diff != "" {
		t.Errorf("root status (-want +got):\n%s", diff)
	}

	// With the automatic schedule, status says what comes next.
	for _, tc := range []struct {
		schedule *adminv1.RootSchedule
		want     string
	}{
		{&adminv1.RootSchedule{Automatic: true, NextStep: "activate r3", NextStepAt: now},
			"root rotation: automatic; next: activate r3 at 2030-01-02T03:04:05Z\n"},
		{&adminv1.RootSchedule{Automatic: true, NextStep: "retire r1", Waiting: "2 current SVIDs still chain to root r1"},
			"root rotation: automatic; next: retire r1 as soon as no current SVID chains to it\nwaiting: 2 current SVIDs still chain to root r1\n"},
	} {
		f.schedule = tc.schedule
		stdout.Reset()
		if err := run(ctx, env, []string{"root", "status"}); err != nil {
			t.Fatal(err)
		}
		if got := stdout.String(); !strings.HasSuffix(got, "bundle revision 7\n"+tc.want) {
			t.Errorf("root status with %v ends:\n%s\nwant it to end with:\n%s", tc.schedule, got[max(0, len(got)-200):], tc.want)
		}
	}
	f.schedule = nil

	stdout.Reset()
	if err := run(ctx, env, []string{"root", "list", "-o", "json"}); err != nil {
		t.Fatal(err)
	}
	var got []authorityJSON
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	wantJSON := []authorityJSON{
		{ID: "r0", Kind: "root", State: "retired", KeyType: "EC-P256", NotBefore: "-", NotAfter: "2030-01-02T03:04:05Z"},
		{ID: "r1", Kind: "root", State: "retiring", KeyType: "EC-P256", NotBefore: "-", NotAfter: "2030-01-02T03:04:05Z", UnexpiredSVIDs: 4, AgentsApplied: i64(3), ConnectedAgents: i64(3), ExpiringSoon: true},
		{ID: "r2", Kind: "root", State: "active", KeyType: "EC-P384", NotBefore: "-", NotAfter: "2030-01-02T03:04:05Z", UnexpiredSVIDs: 2, AgentsApplied: i64(2), ConnectedAgents: i64(3)},
	}
	if diff := cmp.Diff(wantJSON, got); diff != "" {
		t.Errorf("root list -o json (-want +got):\n%s", diff)
	}

	stdout.Reset()
	if err := run(ctx, env, []string{"root", "list", "--all"}); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(stdout.String(), "\n"); lines != 7 || !strings.Contains(stdout.String(), "i2  intermediate") {
		t.Errorf("root list --all:\n%s", stdout)
	}
}

func TestRootSteps(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "root.pem"), filepath.Join(dir, "root.key")
	os.WriteFile(certFile, []byte("CERT"), 0o600)
	os.WriteFile(keyFile, []byte("KEY"), 0o600)

	for _, tc := range []struct {
		name    string
		args    []string
		refuse  error
		check   func(f *fakeRootAdmin) proto.Message
		want    proto.Message
		stdout  string
		wantErr string
	}{
		{
			name:  "activate: flags after the ID",
			args:  []string{"root", "activate", "r2", "--force", "--rotate-now"},
			check: func(f *fakeRootAdmin) proto.Message { return f.activate },
			want:  &adminv1.ActivateRootRequest{Id: "r2", Force: true, RotateNow: true}, stdout: "r2\n",
		},
		{
			name:  "activate: the only candidate",
			args:  []string{"root", "activate"},
			check: func(f *fakeRootAdmin) proto.Message { return f.activate },
			want:  &adminv1.ActivateRootRequest{}, stdout: "r2\n",
		},
		{
			name:    "activate: refused",
			args:    []string{"root", "activate"},
			refuse:  status.Error(codes.FailedPrecondition, "1 of 2 connected agents have not applied bundle revision 7 (spiffe://example.org/signet/agent/join_token/b); wait or use --force"),
			wantErr: "1 of 2 connected agents have not applied bundle revision 7 (spiffe://example.org/signet/agent/join_token/b); wait or use --force",
		},
		{name: "activate: two IDs", args: []string{"root", "activate", "a", "b"}, wantErr: "at most one authority ID"},
		{
			name:  "retire --force",
			args:  []string{"root", "retire", "--force", "r1"},
			check: func(f *fakeRootAdmin) proto.Message { return f.retire },
			want:  &adminv1.RetireRootRequest{Id: "r1", Force: true}, stdout: "r1\n",
		},
		{
			name:  "prepare",
			args:  []string{"root", "prepare"},
			check: func(f *fakeRootAdmin) proto.Message { return f.prepare },
			want:  &adminv1.PrepareRootRequest{}, stdout: "r2\n",
		},
		{
			name:  "prepare --from-file",
			args:  []string{"root", "prepare", "--from-file", certFile, "--key", keyFile},
			check: func(f *fakeRootAdmin) proto.Message { return f.prepare },
			want:  &adminv1.PrepareRootRequest{CertPem: []byte("CERT"), KeyPem: []byte("KEY")}, stdout: "r2\n",
		},
		{
			name:  "prepare --csr-out",
			args:  []string{"root", "prepare", "--csr-out", filepath.Join(dir, "root.csr")},
			check: func(f *fakeRootAdmin) proto.Message { return f.prepare },
			want:  &adminv1.PrepareRootRequest{CsrOnly: true}, stdout: "k1\n",
		},
		{name: "prepare: --key alone", args: []string{"root", "prepare", "--key", keyFile}, wantErr: "go with --from-file"},
		{name: "prepare: --csr-out and --from-file", args: []string{"root", "prepare", "--csr-out", "x", "--from-file", certFile}, wantErr: "cannot be combined"},
		{name: "prepare: missing file", args: []string{"root", "prepare", "--from-file", filepath.Join(dir, "nope")}, wantErr: "--from-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeRootAdmin{err: tc.refuse}
			env, stdout, _ := serveFake(t, f)
			err := run(ctx, env, tc.args)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.check(f); !proto.Equal(got, tc.want) {
				t.Errorf("request %v, want %v", got, tc.want)
			}
			if stdout.String() != tc.stdout {
				t.Errorf("stdout %q, want %q", stdout, tc.stdout)
			}
		})
	}
	if data, err := os.ReadFile(filepath.Join(dir, "root.csr")); err != nil || string(data) != "CSR PEM" {
		t.Errorf("CSR file: %q, %v", data, err)
	}
}

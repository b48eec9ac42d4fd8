package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/signet-mesh/signet/cmd/internal/cli"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

// fakeAdmin answers the admin RPCs the CLI tests need with fixed data,
// and records the last request of each.
type fakeAdmin struct {
	adminv1.UnimplementedAdminServiceServer
	mu   sync.Mutex
	reqs map[string]proto.Message
	// noPreview and noDryRun play a server that predates the preview
	// and dry-run fields: it ignores them.
	noPreview, noDryRun bool

	fakeFederation // cmd_federation_test.go
}

func (f *fakeAdmin) record(name string, m proto.Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.reqs == nil {
		f.reqs = map[string]proto.Message{}
	}
	f.reqs[name] = m
}

func (f *fakeAdmin) last(name string) proto.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reqs[name]
}

const fakeExpiry = int64(1900000000) // 2030-03-17T17:46:40Z

func (f *fakeAdmin) CreateJoinToken(_ context.Context, r *adminv1.CreateJoinTokenRequest) (*adminv1.CreateJoinTokenResponse, error) {
	f.record("CreateJoinToken", r)
	resp := &adminv1.CreateJoinTokenResponse{Token: "secret-token", SpiffeId: "spiffe://example.org/signet/agent/join_token/" + r.NodeName, ExpiresAt: fakeExpiry, Id: "tok-1"}
	if r.Force {
		resp.ReplacedNodeId = resp.SpiffeId
	}
	return resp, nil
}

func (f *fakeAdmin) ListJoinTokens(_ context.Context, r *adminv1.ListJoinTokensRequest) (*adminv1.ListJoinTokensResponse, error) {
	return &adminv1.ListJoinTokensResponse{Tokens: []*adminv1.JoinToken{
		{Id: "tok-1", NodeName: "node1", SpiffeId: "spiffe://example.org/signet/agent/join_token/node1", ExpiresAt: fakeExpiry, CreatedAt: fakeExpiry - 600},
		{Id: "tok-2", SpiffeId: "spiffe://example.org/signet/agent/join_token/tok-2", ExpiresAt: fakeExpiry},
	}}, nil
}

func (f *fakeAdmin) RevokeJoinToken(_ context.Context, r *adminv1.RevokeJoinTokenRequest) (*adminv1.RevokeJoinTokenResponse, error) {
	f.record("RevokeJoinToken", r)
	if r.NodeName == "nobody" {
		return &adminv1.RevokeJoinTokenResponse{}, nil
	}
	return &adminv1.RevokeJoinTokenResponse{Revoked: []*adminv1.JoinToken{{Id: "tok-1", NodeName: "node1"}}}, nil
}

var fakeEntry = &adminv1.Entry{Id: "e-1", SpiffeId: "spiffe://example.org/web", ParentId: "spiffe://example.org/signet/agent/join_token/node1",
	Selectors: []string{"unix:uid:1000", "unix:gid:5"}, X509TtlSeconds: 3600, JwtTtlSeconds: 300, DnsNames: []string{"web.internal"}, Revision: 2, CreatedAt: fakeExpiry}

func (f *fakeAdmin) CreateEntries(_ context.Context, r *adminv1.CreateEntriesRequest) (*adminv1.CreateEntriesResponse, error) {
	f.record("CreateEntries", r)
	out := make([]*adminv1.Entry, len(r.Entries))
	for i, e := range r.Entries {
		out[i] = proto.Clone(e).(*adminv1.Entry)
		out[i].Id = "new-" + string(rune('a'+i))
	}
	return &adminv1.CreateEntriesResponse{Entries: out}, nil
}

func (f *fakeAdmin) ListEntries(context.Context, *adminv1.ListEntriesRequest) (*adminv1.ListEntriesResponse, error) {
	return &adminv1.ListEntriesResponse{Entries: []*adminv1.Entry{fakeEntry, {Id: "e-2", SpiffeId: "spiffe://example.org/db", ParentId: "p", Selectors: []string{"unix:uid:2"}}}}, nil
}

func (f *fakeAdmin) GetEntry(_ context.Context, r *adminv1.GetEntryRequest) (*adminv1.GetEntryResponse, error) {
	f.record("GetEntry", r)
	return &adminv1.GetEntryResponse{Entry: fakeEntry}, nil
}

func (f *fakeAdmin) UpdateEntry(_ context.Context, r *adminv1.UpdateEntryRequest) (*adminv1.UpdateEntryResponse, error) {
	f.record("UpdateEntry", r)
	e := proto.Clone(fakeEntry).(*adminv1.Entry)
	e.Revision++
	if r.X509TtlSeconds != nil {
		e.X509TtlSeconds = *r.X509TtlSeconds
	}
	return &adminv1.UpdateEntryResponse{Entry: e}, nil
}

func (f *fakeAdmin) ListNodes(context.Context, *adminv1.ListNodesRequest) (*adminv1.ListNodesResponse, error) {
	return &adminv1.ListNodesResponse{Nodes: []*adminv1.Node{{SpiffeId: "spiffe://example.org/signet/agent/join_token/node1", Attestor: "join_token", Serial: "ab", Connected: true, ExpiresAt: fakeExpiry}}}, nil
}

func (f *fakeAdmin) ListSVIDs(_ context.Context, r *adminv1.ListSVIDsRequest) (*adminv1.ListSVIDsResponse, error) {
	f.record("ListSVIDs", r)
	return &adminv1.ListSVIDsResponse{Svids: []*adminv1.SVID{
		{Serial: "01", SpiffeId: "spiffe://example.org/web", NodeId: "n", EntryId: "e-1", NotBefore: fakeExpiry - 3600, ExpiresAt: fakeExpiry, AuthorityId: "i1"},
		{Serial: "02", SpiffeId: "spiffe://example.org/db", NodeId: "n", NotBefore: fakeExpiry - 3600, ExpiresAt: fakeExpiry, AuthorityId: "i1"},
		{Serial: "03", SpiffeId: "spiffe://example.org/x,y", NodeId: "n", NotBefore: fakeExpiry - 3600, ExpiresAt: fakeExpiry, AuthorityId: "i1"},
	}}, nil
}

func (f *fakeAdmin) ListAuthorities(context.Context, *adminv1.ListAuthoritiesRequest) (*adminv1.ListAuthoritiesResponse, error) {
	return &adminv1.ListAuthoritiesResponse{BundleRevision: 3, Authorities: []*adminv1.Authority{
		{Id: "r1", Kind: "root", State: "active", KeyType: "EC-P256", NotAfter: fakeExpiry, AgentsApplied: 1, ConnectedAgents: 1},
		{Id: "i1", Kind: "intermediate", State: "active", KeyType: "EC-P256", NotAfter: fakeExpiry, ParentId: "r1"},
	}}, nil
}

func (f *fakeAdmin) ListMTLSPolicies(context.Context, *adminv1.ListMTLSPoliciesRequest) (*adminv1.ListMTLSPoliciesResponse, error) {
	return &adminv1.ListMTLSPoliciesResponse{Policies: []*adminv1.MTLSPolicy{
		{Id: "mp-1", Mode: adminv1.MTLSMode_MTLS_MODE_STRICT, ExemptPorts: []uint32{15021, 9090}, Revision: 1},
	}}, nil
}

func (f *fakeAdmin) GetMTLSStatus(context.Context, *adminv1.GetMTLSStatusRequest) (*adminv1.GetMTLSStatusResponse, error) {
	return &adminv1.GetMTLSStatusResponse{WindowSeconds: 600, Workloads: []*adminv1.WorkloadMTLSStatus{
		{SpiffeId: "spiffe://example.org/web", Mode: adminv1.MTLSMode_MTLS_MODE_PERMISSIVE, MtlsConnections: 4, PlaintextConnections: 2,
			PlaintextSources: []string{"10.0.0.9", "10.0.0.10"}, Ports: []*adminv1.PortMTLSStatus{{Port: 8443, Mode: adminv1.MTLSMode_MTLS_MODE_PERMISSIVE}}},
	}}, nil
}

func (f *fakeAdmin) SetMTLSPolicy(_ context.Context, r *adminv1.SetMTLSPolicyRequest) (*adminv1.SetMTLSPolicyResponse, error) {
	f.record("SetMTLSPolicy", r)
	p := proto.Clone(r.Policy).(*adminv1.MTLSPolicy)
	if !r.Preview || f.noPreview {
		p.Id = "mp-9"
		return &adminv1.SetMTLSPolicyResponse{Policy: p}, nil
	}
	return &adminv1.SetMTLSPolicyResponse{Policy: p, Preview: true, WouldRefuse: []*adminv1.WorkloadMTLSStatus{
		{SpiffeId: "spiffe://example.org/web", Mode: adminv1.MTLSMode_MTLS_MODE_STRICT, MtlsConnections: 4, PlaintextConnections: 2, RefusedConnections: 2, PlaintextSources: []string{"10.0.0.9"}},
	}}, nil
}

func (f *fakeAdmin) PruneAudit(_ context.Context, r *adminv1.PruneAuditRequest) (*adminv1.PruneAuditResponse, error) {
	f.record("PruneAudit", r)
	return &adminv1.PruneAuditResponse{Removed: 42, DryRun: r.DryRun && !f.noDryRun}, nil
}

// runCLI runs a command line in-process against env (from serveAdmin),
// with stdin as standard input.
func runCLI(t *testing.T, env *cliEnv, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	e := *env
	e.stdout, e.stderr, e.stdin = &out, &errb, strings.NewReader(stdin)
	err = run(context.Background(), &e, args)
	return out.String(), errb.String(), err
}

// TestHelp: -h, --help, help CMD and a bare group print help on stdout,
// with nothing on stderr and no error (exit 0).
func TestHelp(t *testing.T) {
	env := &cliEnv{getenv: mapEnv(nil)}
	for _, args := range [][]string{
		{"-h"}, {"--help"}, {"help"}, {"help", "entry"}, {"entry", "-h"}, {"entry"},
		{"entry", "create", "--help"}, {"help", "entry", "create"}, {"entry", "show", "e-1", "-h"},
		{"server", "-h"}, {"agent", "--help"}, {"token", "create", "-h"}, {"mtls", "set", "--help"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			stdout, stderr, err := runCLI(t, env, "", args...)
			if err != nil || stderr != "" {
				t.Fatalf("err %v, stderr %q; want help on stdout and no error", err, stderr)
			}
			if !strings.Contains(stdout, "Usage:") || !strings.Contains(stdout, "Examples:") {
				t.Fatalf("stdout is not a help with examples:\n%s", stdout)
			}
		})
	}
	// help entry is entry's help.
	help, _, _ := runCLI(t, env, "", "help", "entry")
	direct, _, _ := runCLI(t, env, "", "entry", "--help")
	if help != direct || !strings.Contains(help, "signet entry [command]") {
		t.Errorf("signet help entry:\n%s\nwant entry's help:\n%s", help, direct)
	}
	if _, _, err := runCLI(t, env, "", "help", "nosuch"); err == nil || !strings.Contains(err.Error(), `no command "nosuch"`) {
		t.Errorf("help nosuch: %v", err)
	}
}

// TestEveryCommandHasExamples walks the whole command tree.
func TestEveryCommandHasExamples(t *testing.T) {
	root := newRootCommand(&cliEnv{getenv: mapEnv(nil)})
	var walk func(c *cobra.Command)
	n := 0
	walk = func(c *cobra.Command) {
		if c.Hidden {
			return
		}
		n++
		if strings.TrimSpace(c.Example) == "" {
			t.Errorf("%s has no Examples", c.CommandPath())
		}
		if c.Short == "" {
			t.Errorf("%s has no summary", c.CommandPath())
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
	if n < 40 {
		t.Errorf("walked %d commands; the tree is not what this test expects", n)
	}
}

// TestUsageErrors: a bad command line is one line naming the problem and
// where the help is; nothing reaches the server.
func TestUsageErrors(t *testing.T) {
	f := &fakeAdmin{}
	env, _, _ := serveAdmin(t, f)
	for _, tt := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"entyr", "list"}, `unknown command "entyr" for "signet" (did you mean "entry"?)`},
		{[]string{"entry", "lsit"}, `entry: unknown command "lsit" for "signet entry" (did you mean "list"?)`},
		{[]string{"entry", "list", "--bogus"}, "entry list: unknown flag: --bogus (see 'signet entry list --help')"},
		{[]string{"entry", "list", "-o", "yaml"}, "unknown output format: use table, json or csv"},
		{[]string{"entry", "show", "-o", "csv", "e-1"}, "unknown output format: use table or json"},
		{[]string{"entry", "show"}, "expected 1 argument(s): ID; got 0"},
		{[]string{"entry", "list", "extra"}, `unexpected argument "extra"`},
		{[]string{"entry", "delete", "e-1", "-o", "json"}, "unknown shorthand flag: 'o'"},
		{[]string{"root", "activate", "a", "b"}, "expected at most one authority ID; got 2 arguments"},
		{[]string{"token", "create", "--ttl", "soon"}, `"soon" is not a duration like 90s, 1h or 7d`},
		{[]string{"token", "create", "--force=maybe"}, `invalid argument "maybe"`},
		{[]string{"completion", "tcsh"}, `unknown shell "tcsh": use bash, zsh or fish`},
		{[]string{"version", "extra"}, `unexpected argument "extra"`},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, _, err := runCLI(t, env, "", tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
			if strings.Contains(cli.OneLine(err.Error()), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
			if len(f.reqs) != 0 {
				t.Fatalf("a bad command line reached the server: %v", f.reqs)
			}
		})
	}
}

// TestBareBooleans: boolean flags take no value, and may come before or
// after positional arguments.
func TestBareBooleans(t *testing.T) {
	for _, tt := range []struct {
		args  []string
		rpc   string
		check func(proto.Message) bool
	}{
		{[]string{"token", "create", "--force", "--node-name", "n"}, "CreateJoinToken", func(m proto.Message) bool { return m.(*adminv1.CreateJoinTokenRequest).Force }},
		{[]string{"token", "create", "--node-name", "n", "--force=true"}, "CreateJoinToken", func(m proto.Message) bool { return m.(*adminv1.CreateJoinTokenRequest).Force }},
		{[]string{"token", "create", "--node-name", "n", "--force=false"}, "CreateJoinToken", func(m proto.Message) bool { return !m.(*adminv1.CreateJoinTokenRequest).Force }},
		{[]string{"svid", "list", "--valid"}, "ListSVIDs", func(m proto.Message) bool { return m.(*adminv1.ListSVIDsRequest).Valid }},
		{[]string{"mtls", "set", "--mode", "STRICT", "--shadow", "--force"}, "SetMTLSPolicy", func(m proto.Message) bool {
			r := m.(*adminv1.SetMTLSPolicyRequest)
			return r.Force && r.Policy.DryRun && !r.Preview
		}},
		{[]string{"audit", "prune", "--dry-run", "--before", "1d"}, "PruneAudit", func(m proto.Message) bool { return m.(*adminv1.PruneAuditRequest).DryRun }},
		{[]string{"entry", "update", "--clear-dns", "e-1"}, "UpdateEntry", func(m proto.Message) bool {
			r := m.(*adminv1.UpdateEntryRequest)
			return r.Id == "e-1" && r.DnsNames != nil && len(r.DnsNames.Values) == 0
		}},
		{[]string{"entry", "show", "e-1", "-o", "json"}, "GetEntry", func(m proto.Message) bool { return m.(*adminv1.GetEntryRequest).Id == "e-1" }},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			f := &fakeAdmin{}
			env, _, _ := serveAdmin(t, f)
			if _, stderr, err := runCLI(t, env, "", tt.args...); err != nil {
				t.Fatalf("%v (stderr %q)", err, stderr)
			}
			if m := f.last(tt.rpc); m == nil || !tt.check(m) {
				t.Fatalf("%s request %v", tt.rpc, m)
			}
		})
	}
	// A daemon's boolean config key is a bare flag too.
	pass := &cliEnv{getenv: mapEnv(map[string]string{"SIGNET_KEY_PASSPHRASE_FILE": writeFile(t, "pass", "x")})}
	for _, args := range [][]string{
		{"agent", "--insecure-bootstrap", "--check-config"},
		{"agent", "--check-config", "--insecure-bootstrap", "--data-dir", t.TempDir()},
	} {
		stdout, _, err := runCLI(t, pass, "", args...)
		if err != nil || !strings.Contains(stdout, "configuration is valid") {
			t.Errorf("%v: %q, %v", args, stdout, err)
		}
	}
	_, _, err := runCLI(t, pass, "", "agent", "--insecure-bootstrap=false", "--check-config", "--data-dir", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "trust_bundle must be configured") {
		t.Errorf("--insecure-bootstrap=false: %v", err)
	}
}

// TestVersion: version and --version print the module version, commit and
// Go version.
func TestVersion(t *testing.T) {
	env := &cliEnv{getenv: mapEnv(nil)}
	for _, args := range [][]string{{"version"}, {"--version"}} {
		stdout, _, err := runCLI(t, env, "", args...)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(stdout), "\n")
		if len(lines) != 3 || !strings.HasPrefix(lines[0], "signet ") || !strings.HasPrefix(lines[1], "commit ") || lines[2] != "go     "+runtime.Version() {
			t.Errorf("%v printed:\n%s", args, stdout)
		}
	}
}

// TestCompletion: a script for each shell, completing signet's commands.
func TestCompletion(t *testing.T) {
	env := &cliEnv{getenv: mapEnv(nil)}
	for _, shell := range completionShells {
		stdout, _, err := runCLI(t, env, "", "completion", shell)
		if err != nil || !strings.Contains(stdout, "signet") || len(stdout) < 500 {
			t.Errorf("completion %s: %v, %d bytes", shell, err, len(stdout))
		}
	}
	// The scripts call back into the binary; -o values complete.
	stdout, _, err := runCLI(t, env, "", "__complete", "entry", "list", "-o", "")
	if err != nil || !strings.Contains(stdout, "table\njson\ncsv\n") {
		t.Errorf("completing -o: %q, %v", stdout, err)
	}
	stdout, _, _ = runCLI(t, env, "", "__complete", "en")
	if !strings.Contains(stdout, "entry") {
		t.Errorf("completing en: %q", stdout)
	}
}

// TestDurationFlags: days are taken wherever a duration is, and a zero
// TTL is an error naming the flag, not the server's default.
func TestDurationFlags(t *testing.T) {
	for _, tt := range []struct {
		name    string
		args    []string
		rpc     string
		check   func(proto.Message) bool
		wantErr string
	}{
		{name: "token ttl in days", args: []string{"token", "create", "--ttl", "7d"}, rpc: "CreateJoinToken",
			check: func(m proto.Message) bool { return m.(*adminv1.CreateJoinTokenRequest).TtlSeconds == 7*86400 }},
		{name: "x509 ttl days and hours", args: []string{"entry", "create", "--spiffe-id", "spiffe://example.org/a", "--parent-id", "p", "--x509-ttl", "1d12h"}, rpc: "CreateEntries",
			check: func(m proto.Message) bool {
				return m.(*adminv1.CreateEntriesRequest).Entries[0].X509TtlSeconds == 36*3600
			}},
		{name: "no x509 ttl is the server default", args: []string{"entry", "create", "--spiffe-id", "spiffe://example.org/a", "--parent-id", "p"}, rpc: "CreateEntries",
			check: func(m proto.Message) bool { return m.(*adminv1.CreateEntriesRequest).Entries[0].X509TtlSeconds == 0 }},
		{name: "update ttl in days", args: []string{"entry", "update", "e-1", "--jwt-ttl", "1d"}, rpc: "UpdateEntry",
			check: func(m proto.Message) bool {
				r := m.(*adminv1.UpdateEntryRequest)
				return r.GetJwtTtlSeconds() == 86400 && r.X509TtlSeconds == nil
			}},
		{name: "prune before 90d", args: []string{"audit", "prune", "--before", "90d"}, rpc: "PruneAudit",
			check: func(m proto.Message) bool {
				got := time.Unix(0, m.(*adminv1.PruneAuditRequest).Before)
				want := time.Now().Add(-90 * cli.Day)
				return got.Sub(want).Abs() < time.Minute
			}},
		{name: "x509 ttl 0", args: []string{"entry", "create", "--spiffe-id", "spiffe://example.org/a", "--parent-id", "p", "--x509-ttl", "0"}, wantErr: "--x509-ttl 0s: must be positive"},
		{name: "x509 ttl 0 on update", args: []string{"entry", "update", "e-1", "--x509-ttl", "0s"}, wantErr: "--x509-ttl 0s: must be positive"},
		{name: "negative jwt ttl", args: []string{"entry", "create", "--spiffe-id", "spiffe://example.org/a", "--parent-id", "p", "--jwt-ttl=-1d"}, wantErr: "--jwt-ttl -24h0m0s: must be positive"},
		{name: "fraction of a second", args: []string{"entry", "create", "--spiffe-id", "spiffe://example.org/a", "--parent-id", "p", "--x509-ttl", "1500ms"}, wantErr: "--x509-ttl 1.5s: must be a whole number of seconds"},
		{name: "token ttl 0", args: []string{"token", "create", "--ttl", "0"}, wantErr: "--ttl 0s: must be positive"},
		{name: "bad since", args: []string{"audit", "export", "--since", "yesterday"}, wantErr: `--since "yesterday"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeAdmin{}
			env, _, _ := serveAdmin(t, f)
			_, _, err := runCLI(t, env, "", tt.args...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				if len(f.reqs) != 0 {
					t.Fatalf("bad input reached the server: %v", f.reqs)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m := f.last(tt.rpc); m == nil || !tt.check(m) {
				t.Fatalf("%s request %v", tt.rpc, m)
			}
		})
	}
}

// TestEntriesFromStdin: --file - reads the entries from standard input.
func TestEntriesFromStdin(t *testing.T) {
	f := &fakeAdmin{}
	env, _, _ := serveAdmin(t, f)
	stdin := `
- spiffe_id: spiffe://example.org/a
  parent_id: spiffe://example.org/signet/agent/join_token/n
  selectors: [unix:uid:1]
  x509_ttl: 1d
- spiffe_id: spiffe://example.org/b
  parent_id: spiffe://example.org/signet/agent/join_token/n
  selectors:
    - unix:uid:2
    - unix:gid:2
  dns_names: [b.internal]
`
	stdout, _, err := runCLI(t, env, stdin, "entry", "create", "--file", "-")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(stdout); len(got) != 2 {
		t.Errorf("printed %q, want the 2 new ids", stdout)
	}
	want := &adminv1.CreateEntriesRequest{Entries: []*adminv1.Entry{
		{SpiffeId: "spiffe://example.org/a", ParentId: "spiffe://example.org/signet/agent/join_token/n", Selectors: []string{"unix:uid:1"}, X509TtlSeconds: 86400},
		{SpiffeId: "spiffe://example.org/b", ParentId: "spiffe://example.org/signet/agent/join_token/n", Selectors: []string{"unix:uid:2", "unix:gid:2"}, DnsNames: []string{"b.internal"}},
	}}
	if diff := cmp.Diff(want, f.last("CreateEntries"), protocmp.Transform()); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
	if _, _, err := runCLI(t, env, "", "entry", "create", "--file", "-"); err == nil || !strings.Contains(err.Error(), "<stdin>: no entries") {
		t.Errorf("empty stdin: %v", err)
	}
	if _, _, err := runCLI(t, env, stdin, "entry", "create", "--file", "-", "--selector", "unix:uid:1"); err == nil || !strings.Contains(err.Error(), "--file cannot be combined with --selector") {
		t.Errorf("--file with --selector: %v", err)
	}
}

// TestEntryFileErrors: a bad entries file names the line, the entry and
// the key, and creates nothing.
func TestEntryFileErrors(t *testing.T) {
	const good = "- spiffe_id: spiffe://example.org/a\n  parent_id: p\n  selectors: [unix:uid:1]\n"
	for _, tt := range []struct {
		name, file, wantErr string
	}{
		{"unknown key", good + "- spiffe_id: spiffe://example.org/b\n  parent_id: p\n  colour: blue\n", `<stdin>: line 6: entry 2: unknown field "colour"`},
		{"bad ttl", good + "- spiffe_id: spiffe://example.org/b\n  x509_ttl: forever\n", `line 5: entry 2: x509_ttl: "forever" is not a duration`},
		{"zero ttl", "- spiffe_id: a\n  jwt_ttl: 0s\n", `line 2: entry 1: jwt_ttl "0s" must be a positive whole number of seconds`},
		{"selectors not a list", "- spiffe_id: a\n  selectors:\n    uid: 1\n", "line 2: entry 1: selectors: want a value, not a mapping"},
		{"nested list", "- spiffe_id: a\n  selectors: [[a]]\n", "line 2: entry 1: selectors: list items must be single values, not a list"},
		{"server fields", "- spiffe_id: a\n  id: x\n", "line 2: entry 1: id is assigned by the server"},
		{"not a list", "spiffe_id: a\n", "line 1: an entries file is a list of entries"},
		{"scalar entry", "- a\n", "line 1: entry 1: an entry must be a mapping of keys to values"},
		{"empty entry", "- \n", "line 1: entry 1: an empty entry"},
		{"duplicate key", "- spiffe_id: a\n  spiffe_id: b\n", `line 2: mapping key "spiffe_id" already defined`},
		{"syntax", "- spiffe_id: [a\n", "<stdin>: line 1: "},
		{"alias", "- spiffe_id: &x a\n- spiffe_id: *x\n", "line 2: entry 2: YAML aliases (*name) are not supported"},
		{"json", `[{"spiffe_id": "a"}, {"spiffe_id": "b", "dns": ["x"]}]`, `line 1: entry 2: unknown field "dns"`},
		{"empty list", "[]\n", "no entries in file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeAdmin{}
			env, _, _ := serveAdmin(t, f)
			_, _, err := runCLI(t, env, tt.file, "entry", "create", "--file", "-")
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
			if f.last("CreateEntries") != nil {
				t.Fatal("a bad file reached the server")
			}
		})
	}
}

// TestListOutputs: every list command prints table, json and csv, with
// the same items in each; the CSV columns are the JSON keys.
func TestListOutputs(t *testing.T) {
	env, _, _ := serveAdmin(t, &fakeAdmin{})
	lists := [][]string{
		{"token", "list"}, {"entry", "list"}, {"node", "list"}, {"svid", "list"}, {"root", "list"}, {"root", "list", "--all"},
		{"root", "status"}, {"mtls", "list"}, {"mtls", "status"}, {"federation", "list"},
	}
	// Every command that takes -o with csv is in the table above.
	root := newRootCommand(env)
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if f := c.Flags().Lookup("output"); f != nil && strings.Contains(f.Usage, "csv") && c.Name() != "fetch" {
			path := strings.Fields(strings.TrimPrefix(c.CommandPath(), "signet "))
			found := false
			for _, l := range lists {
				found = found || cmp.Equal(l[:2], path)
			}
			if !found {
				t.Errorf("list command %s is not tested here", c.CommandPath())
			}
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
	for _, args := range lists {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			jsonOut, _, err := runCLI(t, env, "", append(args, "-o", "json")...)
			if err != nil {
				t.Fatal(err)
			}
			var items []map[string]any
			if err := json.Unmarshal([]byte(jsonOut), &items); err != nil || len(items) == 0 {
				t.Fatalf("-o json: %v\n%s", err, jsonOut)
			}
			csvOut, _, err := runCLI(t, env, "", append(args, "-o", "csv")...)
			if err != nil {
				t.Fatal(err)
			}
			records, err := csv.NewReader(strings.NewReader(csvOut)).ReadAll()
			if err != nil {
				t.Fatalf("-o csv: %v\n%s", err, csvOut)
			}
			if len(records) != len(items)+1 {
				t.Fatalf("-o csv has %d rows for %d items:\n%s", len(records)-1, len(items), csvOut)
			}
			keys := map[string]bool{}
			for _, it := range items {
				for k := range it {
					keys[k] = true
				}
			}
			for _, key := range records[0] {
				if !keys[key] && !omitted(jsonOut, key) {
					t.Errorf("csv column %q is not a json key", key)
				}
			}
			for key := range keys {
				if !contains(records[0], key) {
					t.Errorf("json key %q is not a csv column", key)
				}
			}
			tableOut, _, err := runCLI(t, env, "", args...)
			if err != nil {
				t.Fatal(err)
			}
			for _, it := range items {
				id, _ := it["id"].(string)
				if id == "" {
					id, _ = it["spiffe_id"].(string)
				}
				if !strings.Contains(tableOut, id) {
					t.Errorf("table lacks %q:\n%s", id, tableOut)
				}
			}
		})
	}
	// CSV cells: lists are joined with commas, and quoted as CSV needs.
	csvOut, _, err := runCLI(t, env, "", "entry", "list", "-o", "csv")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(csvOut, `"unix:uid:1000,unix:gid:5"`) {
		t.Errorf("entry list -o csv:\n%s", csvOut)
	}
	// svid list -o csv keeps its columns (a contract).
	csvOut, _, _ = runCLI(t, env, "", "svid", "list", "-o", "csv")
	if first := strings.SplitN(csvOut, "\n", 2)[0]; first != "serial,spiffe_id,node_id,entry_id,not_before,expires_at,authority_id" {
		t.Errorf("svid list -o csv header %q", first)
	}
	if !strings.Contains(csvOut, `"spiffe://example.org/x,y"`) {
		t.Errorf("a comma in a cell is not quoted:\n%s", csvOut)
	}
}

// omitted reports whether key is an omitempty JSON key absent from every
// item of the output (the CSV still has its column).
func omitted(jsonOut, key string) bool { return !strings.Contains(jsonOut, `"`+key+`"`) }

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestTokenCommands: create prints a table (or the JSON contract), list
// never shows a secret, revoke takes an id or a node name.
func TestTokenCommands(t *testing.T) {
	f := &fakeAdmin{}
	env, _, _ := serveAdmin(t, f)
	stdout, stderr, err := runCLI(t, env, "", "token", "create", "--node-name", "node1")
	if err != nil {
		t.Fatal(err)
	}
	var table [][]string
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		table = append(table, strings.Fields(line))
	}
	want := [][]string{{"TOKEN", "NODE", "ID", "EXPIRES"}, {"secret-token", "spiffe://example.org/signet/agent/join_token/node1", "2030-03-17T17:46:40Z"}}
	if diff := cmp.Diff(want, table); diff != "" || stderr != "" {
		t.Errorf("token create (-want +got):\n%s\nstderr %q", diff, stderr)
	}
	stdout, _, err = runCLI(t, env, "", "token", "create", "--node-name", "node1", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var tok map[string]string
	if err := json.Unmarshal([]byte(stdout), &tok); err != nil {
		t.Fatal(err)
	}
	if tok["token"] != "secret-token" || tok["spiffe_id"] == "" || tok["expires_at"] != "2030-03-17T17:46:40Z" || tok["id"] != "tok-1" {
		t.Errorf("token create -o json = %v", tok)
	}
	// --force says which node it replaces.
	_, stderr, err = runCLI(t, env, "", "token", "create", "--node-name", "node1", "--force")
	if err != nil || !strings.Contains(stderr, "replaces the live node spiffe://example.org/signet/agent/join_token/node1") {
		t.Errorf("token create --force: %v, stderr %q", err, stderr)
	}
	stdout, _, err = runCLI(t, env, "", "token", "list")
	if err != nil || strings.Contains(stdout, "secret") || !strings.Contains(stdout, "node1") || !strings.Contains(stdout, "tok-2") {
		t.Errorf("token list: %v\n%s", err, stdout)
	}
	for _, tt := range []struct {
		args    []string
		want    *adminv1.RevokeJoinTokenRequest
		wantErr string
	}{
		{args: []string{"tok-1"}, want: &adminv1.RevokeJoinTokenRequest{Id: "tok-1"}},
		{args: []string{"--node-name", "node1"}, want: &adminv1.RevokeJoinTokenRequest{NodeName: "node1"}},
		{args: nil, wantErr: "give a token ID (signet token list) or --node-name NAME"},
		{args: []string{"tok-1", "--node-name", "node1"}, wantErr: "not both"},
		{args: []string{"--node-name", "nobody"}, wantErr: "no unused join token for node nobody"},
	} {
		f.record("RevokeJoinToken", nil)
		_, stderr, err := runCLI(t, env, "", append([]string{"token", "revoke"}, tt.args...)...)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("revoke %v: %v, want %q", tt.args, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !strings.Contains(stderr, "revoked join token tok-1 (node node1)") {
			t.Errorf("revoke %v: %v, stderr %q", tt.args, err, stderr)
		}
		if diff := cmp.Diff(tt.want, f.last("RevokeJoinToken"), protocmp.Transform()); diff != "" {
			t.Errorf("revoke %v request (-want +got):\n%s", tt.args, diff)
		}
	}
}

// TestEntryUpdate: only the flags given are sent; lists replace.
func TestEntryUpdate(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	for _, tt := range []struct {
		name    string
		args    []string
		want    *adminv1.UpdateEntryRequest
		wantErr string
	}{
		{name: "ttl only", args: []string{"--x509-ttl", "2h"}, want: &adminv1.UpdateEntryRequest{Id: "e-1", X509TtlSeconds: i64(7200)}},
		{name: "dns names", args: []string{"--dns", "a.internal", "--dns", "b.internal"}, want: &adminv1.UpdateEntryRequest{Id: "e-1", DnsNames: &adminv1.StringList{Values: []string{"a.internal", "b.internal"}}}},
		{name: "clear dns", args: []string{"--clear-dns"}, want: &adminv1.UpdateEntryRequest{Id: "e-1", DnsNames: &adminv1.StringList{}}},
		{name: "selectors and jwt ttl", args: []string{"--selector", "unix:uid:1", "--jwt-ttl", "10m", "--selector", "unix:path:/a,b"},
			want: &adminv1.UpdateEntryRequest{Id: "e-1", JwtTtlSeconds: i64(600), Selectors: &adminv1.StringList{Values: []string{"unix:uid:1", "unix:path:/a,b"}}}},
		{name: "nothing", args: nil, wantErr: "nothing to update"},
		{name: "dns and clear-dns", args: []string{"--dns", "a", "--clear-dns"}, wantErr: "--dns and --clear-dns are exclusive"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeAdmin{}
			env, _, _ := serveAdmin(t, f)
			stdout, _, err := runCLI(t, env, "", append([]string{"entry", "update", "e-1"}, tt.args...)...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || f.last("UpdateEntry") != nil {
					t.Fatalf("error %v, want %q and no request", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, f.last("UpdateEntry"), protocmp.Transform()); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
			if !strings.Contains(stdout, "Revision:  3") {
				t.Errorf("the updated entry is not shown:\n%s", stdout)
			}
		})
	}
}

// TestMTLSPreview: --dry-run sends a preview and prints what would be
// refused; a server that installs instead is reported, with the undo.
func TestMTLSPreview(t *testing.T) {
	f := &fakeAdmin{}
	env, _, _ := serveAdmin(t, f)
	stdout, _, err := runCLI(t, env, "", "mtls", "set", "--mode", "STRICT", "--prefix", "spiffe://example.org/", "--dry-run")
	if err != nil {
		t.Fatal(err)
	}
	req := f.last("SetMTLSPolicy").(*adminv1.SetMTLSPolicyRequest)
	if !req.Preview || req.Policy.DryRun {
		t.Errorf("request %v: want a preview of a policy that is not in dry run", req)
	}
	for _, want := range []string{"preview of STRICT on prefix spiffe://example.org/ (nothing was installed); connection counts over the last 10m0s", "WOULD REFUSE", "spiffe://example.org/web", "10.0.0.9"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("preview lacks %q:\n%s", want, stdout)
		}
	}
	stdout, _, err = runCLI(t, env, "", "mtls", "set", "--mode", "STRICT", "--dry-run", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var got mtlsPreviewJSON
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatal(err)
	}
	if !got.Preview || got.Policy.Mode != "STRICT" || len(got.WouldRefuse) != 1 || got.WouldRefuse[0].RefusedConnections != 2 || got.WouldRefuse[0].WindowSeconds != 600 {
		t.Errorf("preview json = %+v", got)
	}
	f.noPreview = true
	_, _, err = runCLI(t, env, "", "mtls", "set", "--mode", "STRICT", "--dry-run")
	if err == nil || !strings.Contains(err.Error(), "INSTALLED the policy mp-9; remove it with: signet mtls delete mp-9") {
		t.Errorf("a server without previews: %v", err)
	}
}

// TestAuditPruneDryRun and the --type check of audit export.
func TestAuditCommands(t *testing.T) {
	f := &fakeAdmin{}
	env, _, _ := serveAdmin(t, f)
	stdout, _, err := runCLI(t, env, "", "audit", "prune", "--before", "30d", "--dry-run")
	if err != nil || stdout != "would remove 42 records (nothing was removed)\n" {
		t.Errorf("prune --dry-run: %q, %v", stdout, err)
	}
	f.noDryRun = true
	if _, _, err := runCLI(t, env, "", "audit", "prune", "--before", "30d", "--dry-run"); err == nil || !strings.Contains(err.Error(), "does not support --dry-run and REMOVED 42 records") {
		t.Errorf("a server without dry runs: %v", err)
	}
	_, _, err = runCLI(t, env, "", "audit", "export", "--type", "svid.issued,svid.isued")
	if err == nil || !strings.Contains(err.Error(), `--type "svid.isued": not a record type; use one of svid.issued, jwt.issued`) {
		t.Errorf("unknown --type: %v", err)
	}
	help, _, _ := runCLI(t, env, "", "audit", "export", "--help")
	for _, typ := range auditTypes {
		if !strings.Contains(help, "\n  "+typ+"\n") {
			t.Errorf("audit export --help does not list %s", typ)
		}
	}
}

// TestSocketEnvironment: the client commands find the agent through
// SPIFFE_ENDPOINT_SOCKET (a URI, or a path), and refuse a bad one clearly.
func TestSocketEnvironment(t *testing.T) {
	for _, tt := range []struct {
		name    string
		env     map[string]string
		args    []string
		wantErr string
	}{
		{"fetch: the variable's path", map[string]string{cli.EndpointSocketEnv: "unix:///nonexistent/sg.sock"}, []string{"workload", "fetch", "--timeout", "100ms"}, "fetching from /nonexistent/sg.sock"},
		{"fetch: a plain path", map[string]string{cli.EndpointSocketEnv: "/nonexistent/plain.sock"}, []string{"workload", "fetch", "--timeout", "100ms"}, "fetching from /nonexistent/plain.sock"},
		{"fetch: --socket wins", map[string]string{cli.EndpointSocketEnv: "unix:///nonexistent/env.sock"}, []string{"workload", "fetch", "--socket", "/nonexistent/flag.sock", "--timeout", "100ms"}, "fetching from /nonexistent/flag.sock"},
		{"fetch: the default", nil, []string{"workload", "fetch", "--timeout", "100ms"}, "fetching from " + cli.DefaultAgentSocket},
		{"fetch: tcp", map[string]string{cli.EndpointSocketEnv: "tcp://127.0.0.1:1"}, []string{"workload", "fetch"}, `SPIFFE_ENDPOINT_SOCKET="tcp://127.0.0.1:1": signet serves the Workload API on a Unix socket only`},
		{"fetch: two slashes", map[string]string{cli.EndpointSocketEnv: "unix://run/x.sock"}, []string{"workload", "fetch"}, "with three slashes"},
		{"proxy: bad variable", map[string]string{cli.EndpointSocketEnv: "tcp://x:1"}, []string{"proxy", "--spiffe-id", "spiffe://example.org/a", "--inbound", "127.0.0.1:0=127.0.0.1:1"}, "SPIFFE_ENDPOINT_SOCKET="},
		{"proxy: bad flag", nil, []string{"proxy", "--socket", "unix:rel", "--spiffe-id", "spiffe://example.org/a", "--inbound", "127.0.0.1:0=127.0.0.1:1"}, `--socket "unix:rel"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := os.Stat(cli.DefaultAgentSocket); err == nil && tt.env == nil {
				t.Skipf("an agent serves %s on this machine", cli.DefaultAgentSocket)
			}
			_, _, err := runCLI(t, &cliEnv{getenv: mapEnv(tt.env)}, "", tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// TestAdminSocketEnvironment: operator commands take the socket from
// SIGNET_ADMIN_SOCKET, and --admin-socket wins over it.
func TestAdminSocketEnvironment(t *testing.T) {
	env, _, _ := serveAdmin(t, &fakeAdmin{})
	if _, _, err := runCLI(t, env, "", "entry", "list"); err != nil {
		t.Fatalf("with %s: %v", cli.AdminSocketEnv, err)
	}
	_, _, err := runCLI(t, env, "", "entry", "list", "--admin-socket", "/nonexistent/admin.sock")
	if err == nil || !strings.Contains(err.Error(), "cannot reach the CA admin socket /nonexistent/admin.sock (set --admin-socket or SIGNET_ADMIN_SOCKET)") {
		t.Errorf("--admin-socket over the variable: %v", err)
	}
	// A command the server does not implement says so.
	_, _, err = runCLI(t, env, "", "bundle", "show")
	if err == nil || !strings.Contains(err.Error(), "does not support this command") {
		t.Errorf("unimplemented: %v", err)
	}
}

// TestServerNeedsDataDir: a server without a data directory is refused in
// one line that says what to do; dev's ./signet-data is not its default.
func TestServerNeedsDataDir(t *testing.T) {
	for _, args := range [][]string{{"server", "--check-config"}, {"server"}} {
		_, _, err := runCLI(t, &cliEnv{getenv: mapEnv(map[string]string{cli.PassphraseEnv: "x"})}, "", args...)
		if !errors.Is(err, errNoDataDir) || !strings.Contains(err.Error(), "give --data-dir DIR") {
			t.Errorf("%v: %v", args, err)
		}
	}
	if _, err := os.Stat(defaultDataDir); err == nil {
		t.Errorf("%s was created", defaultDataDir)
	}
}

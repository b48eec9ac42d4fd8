package proxyapi_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/signet-mesh/signet/agent/cache"
	"github.com/signet-mesh/signet/agent/proxyapi"
	"github.com/signet-mesh/signet/internal/mtlspolicy"
	"github.com/signet-mesh/signet/internal/peercred"
	agentv1 "github.com/signet-mesh/signet/proto/signet/agent/v1"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

const (
	web   = "spiffe://example.org/web"
	other = "spiffe://example.org/other"
)

// fakeAttestor gives every caller the same selectors.
type fakeAttestor struct{ sels []string }

func (f fakeAttestor) Attest(context.Context, peercred.Creds) ([]string, error) { return f.sels, nil }

// fakePolicies is a settable policy set.
type fakePolicies struct {
	mu       sync.Mutex
	policies []mtlspolicy.Policy
	known    bool
	changed  chan struct{}
}

func newFakePolicies() *fakePolicies { return &fakePolicies{changed: make(chan struct{})} }

func (f *fakePolicies) MTLSPolicies() ([]mtlspolicy.Policy, bool, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.policies, f.known, f.changed
}

func (f *fakePolicies) set(ps ...mtlspolicy.Policy) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.policies, f.known = ps, true
	close(f.changed)
	f.changed = make(chan struct{})
}

// fakeReporter records what it is given.
type fakeReporter struct {
	mu     sync.Mutex
	counts []*agentv1.ConnectionCounts
}

func (f *fakeReporter) AddConnections(c []*agentv1.ConnectionCounts) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.counts = append(f.counts, c...)
}

// serve runs a Server on a Unix socket with peer credentials and returns a
// client. The caller's selectors are "unix:uid:1"; web's entry matches
// them, other's does not.
func serve(t *testing.T, policies proxyapi.Policies, rep proxyapi.Reporter) agentv1.ProxyServiceClient {
	t.Helper()
	c := cache.New(cache.Config{TrustDomain: td})
	c.ApplyEntries(true, []cache.Entry{
		{ID: "e1", SPIFFEID: spiffeid.RequireFromString(web), Selectors: []string{"unix:uid:1"}},
		{ID: "e2", SPIFFEID: spiffeid.RequireFromString(other), Selectors: []string{"unix:uid:2"}},
	}, nil)
	if err := c.SetBundle(x509bundle.New(td), nil, 1); err != nil {
		t.Fatal(err)
	}
	srv := proxyapi.New(proxyapi.Config{Cache: c, Attestor: fakeAttestor{sels: []string{"unix:uid:1"}}, Policies: policies, Reporter: rep})
	path := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := peercred.Listen(path, 0o700)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.Creds(peercred.TransportCredentials()))
	srv.Register(g)
	go g.Serve(ln)
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient("unix:"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return agentv1.NewProxyServiceClient(conn)
}

func TestWatchPolicy(t *testing.T) {
	pol := newFakePolicies()
	client := serve(t, pol, &fakeReporter{})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	stream, err := client.WatchPolicy(ctx, &agentv1.WatchPolicyRequest{SpiffeId: web, Ports: []uint32{8443, 15021}})
	if err != nil {
		t.Fatal(err)
	}
	// Nothing is sent before the agent knows the policy set.
	got := make(chan *agentv1.WatchPolicyResponse, 10)
	errc := make(chan error, 1)
	go func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				errc <- err
				return
			}
			got <- resp
		}
	}()
	select {
	case resp := <-got:
		t.Fatalf("received %v before the policy set was known", resp)
	case <-time.After(100 * time.Millisecond):
	}

	strict := mtlspolicy.Policy{ID: "mp-1", SPIFFEID: web, Mode: mtlspolicy.Strict, ExemptPorts: []uint32{15021}}
	pol.set(strict)
	want := &agentv1.WatchPolicyResponse{
		Workload: &agentv1.PortPolicy{Mode: "STRICT", PolicyId: "mp-1"},
		Ports: []*agentv1.PortPolicy{
			{Port: 8443, Mode: "STRICT", PolicyId: "mp-1"},
			{Port: 15021, Mode: "STRICT", Exempt: true, PolicyId: "mp-1"},
		},
	}
	expect := func(want *agentv1.WatchPolicyResponse) {
		t.Helper()
		select {
		case resp := <-got:
			if diff := cmp.Diff(want, resp, protocmp.Transform()); diff != "" {
				t.Fatalf("WatchPolicy response (-want +got):\n%s", diff)
			}
		case err := <-errc:
			t.Fatalf("stream ended: %v", err)
		case <-ctx.Done():
			t.Fatal("no response")
		}
	}
	expect(want)

	// A change that does not alter this workload's decision sends nothing;
	// the next one that does is sent.
	pol.set(strict, mtlspolicy.Policy{ID: "mp-2", SPIFFEID: other, Mode: mtlspolicy.Disable})
	pol.set(strict, mtlspolicy.Policy{ID: "mp-3", SPIFFEID: web, Port: 8443, Mode: mtlspolicy.Strict, DryRun: true})
	want.Ports[0] = &agentv1.PortPolicy{Port: 8443, Mode: "STRICT", DryRun: true, PolicyId: "mp-3"}
	expect(want)

	pol.set()
	expect(&agentv1.WatchPolicyResponse{
		Workload: &agentv1.PortPolicy{Mode: "PERMISSIVE"},
		Ports:    []*agentv1.PortPolicy{{Port: 8443, Mode: "PERMISSIVE"}, {Port: 15021, Mode: "PERMISSIVE"}},
	})
}

func TestWatchPolicyRefused(t *testing.T) {
	pol := newFakePolicies()
	pol.set()
	client := serve(t, pol, &fakeReporter{})
	tests := []struct {
		name string
		req  *agentv1.WatchPolicyRequest
		want codes.Code
	}{
		{"another workload's ID", &agentv1.WatchPolicyRequest{SpiffeId: other}, codes.PermissionDenied},
		{"no ID", &agentv1.WatchPolicyRequest{}, codes.InvalidArgument},
		{"port 0", &agentv1.WatchPolicyRequest{SpiffeId: web, Ports: []uint32{0}}, codes.InvalidArgument},
		{"port too large", &agentv1.WatchPolicyRequest{SpiffeId: web, Ports: []uint32{70000}}, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stream, err := client.WatchPolicy(t.Context(), tt.req)
			if err == nil {
				_, err = stream.Recv()
			}
			if status.Code(err) != tt.want {
				t.Fatalf("WatchPolicy: %v, want %s", err, tt.want)
			}
		})
	}
}

func TestReportConnections(t *testing.T) {
	rep := &fakeReporter{}
	client := serve(t, newFakePolicies(), rep)
	mine := &agentv1.ConnectionCounts{SpiffeId: web, Port: 8443, Mtls: 3, Plaintext: 2, Refused: 1, PlaintextSources: []string{"10.0.0.1"}}
	if _, err := client.ReportConnections(t.Context(), &agentv1.ReportConnectionsRequest{Connections: []*agentv1.ConnectionCounts{mine}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		counts []*agentv1.ConnectionCounts
		want   codes.Code
	}{
		{"another workload", []*agentv1.ConnectionCounts{mine, {SpiffeId: other, Port: 80, Plaintext: 1}}, codes.PermissionDenied},
		{"negative count", []*agentv1.ConnectionCounts{{SpiffeId: web, Port: 80, Plaintext: -1}}, codes.InvalidArgument},
		{"bad port", []*agentv1.ConnectionCounts{{SpiffeId: web, Port: 65536}}, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := client.ReportConnections(t.Context(), &agentv1.ReportConnectionsRequest{Connections: tt.counts})
			if status.Code(err) != tt.want {
				t.Fatalf("ReportConnections: %v, want %s", err, tt.want)
			}
		})
	}
	rep.mu.Lock()
	defer rep.mu.Unlock()
	// Refused reports add nothing, not even their allowed part.
	if diff := cmp.Diff([]*agentv1.ConnectionCounts{mine}, rep.counts, protocmp.Transform()); diff != "" {
		t.Fatalf("reported counts (-want +got):\n%s", diff)
	}
}

package proxy_test

import (
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"

	"github.com/signet-mesh/signet/internal/backoff"
	agentv1 "github.com/signet-mesh/signet/proto/signet/agent/v1"
	"github.com/signet-mesh/signet/sds/internal/sdstest"
	"github.com/signet-mesh/signet/sds/proxy"
)

// policyAgent is a hand-written agent ProxyService: WatchPolicy sends one
// STRICT policy and holds the stream until the server stops.
type policyAgent struct {
	agentv1.UnimplementedProxyServiceServer
}

func (policyAgent) WatchPolicy(_ *agentv1.WatchPolicyRequest, stream grpc.ServerStreamingServer[agentv1.WatchPolicyResponse]) error {
	if err := stream.Send(&agentv1.WatchPolicyResponse{Workload: &agentv1.PortPolicy{Mode: "STRICT"}}); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

// serveAgent serves policyAgent on path until the returned stop is called.
func serveAgent(t *testing.T, path string) (stop func()) {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	agentv1.RegisterProxyServiceServer(srv, policyAgent{})
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return srv.Stop
}

// TestAgentClientReconnects: when the agent goes away and comes back, the
// proxy says it is reconnecting to the agent, then that it reconnected.
func TestAgentClientReconnects(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.sock")
	stop := serveAgent(t, path)
	logs := &sdstest.LogRecorder{}
	c, err := proxy.DialAgent(proxy.AgentConfig{
		SocketPath: path, SPIFFEID: spiffeid.RequireFromString("spiffe://example.org/web"),
		Backoff: backoff.Config{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond},
		Logger:  logs.Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	updates := make(chan proxy.Policy, 10)
	go c.Watch(t.Context(), nil, func(p proxy.Policy) { updates <- p })
	recv := func(what string) {
		t.Helper()
		select {
		case <-updates:
		case <-time.After(10 * time.Second):
			t.Fatalf("no policy %s", what)
		}
	}
	recv("from the agent")

	stop()
	waitLogged := func(msg string) map[string]string {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for len(logs.Find(msg)) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%q not logged", msg)
			}
			time.Sleep(5 * time.Millisecond)
		}
		return logs.Find(msg)[0]
	}
	if rec := waitLogged("policy watch interrupted; reconnecting to the agent"); rec["socket"] != path {
		t.Errorf("reconnect line names socket %q, want %q", rec["socket"], path)
	}
	serveAgent(t, path)
	recv("after the agent came back")
	waitLogged("policy watch reconnected to the agent")
}

package proxy_test

import (
	"context"
	"log"
	"net"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-mesh/signet/sds/client"
	"github.com/signet-mesh/signet/sds/proxy"
	"github.com/signet-mesh/signet/sds/server"
)

// A sidecar for spiffe://example.org/web: certificates over SDS, the mTLS
// mode and the connection reports over the agent's proxy API, both on the
// agent's socket.
func Example() {
	ctx := context.Background()
	const socket = "/run/signet/agent.sock"
	id := spiffeid.RequireFromString("spiffe://example.org/web")

	sds := client.New(client.Config{SocketPath: socket, ResourceNames: []string{id.String(), server.RootCAName}})
	go sds.Run(ctx)
	if err := sds.WaitReady(ctx); err != nil {
		log.Fatal(err)
	}
	agent, err := proxy.DialAgent(proxy.AgentConfig{SocketPath: socket, SPIFFEID: id})
	if err != nil {
		log.Fatal(err)
	}
	defer agent.Close()
	p, err := proxy.New(proxy.Config{SPIFFEID: id, Credentials: proxy.SDSCredentials(sds, id), Policy: agent, Reporter: agent})
	if err != nil {
		log.Fatal(err)
	}
	in, _ := net.Listen("tcp", ":8443")
	out, _ := net.Listen("tcp", "127.0.0.1:15001")
	err = p.Run(ctx,
		proxy.Inbound{Listener: in, Upstream: "127.0.0.1:8080"},
		proxy.Outbound{Listener: out, Remote: "db.internal:8443", PeerID: spiffeid.RequireFromString("spiffe://example.org/db")},
	)
	if err != nil {
		log.Fatal(err)
	}
}

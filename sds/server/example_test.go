package server_test

import (
	"context"
	"net"

	"google.golang.org/grpc"

	"github.com/signet-mesh/signet/internal/peercred"
	"github.com/signet-mesh/signet/sds/server"
)

// cacheSource and workloadAttestor stand for cmd/signet's adapters of
// agent/cache and the workload attestor.
type (
	cacheSource      struct{ server.Source }
	workloadAttestor struct{}
)

func (workloadAttestor) Attest(context.Context, peercred.Creds) ([]string, error) {
	return []string{"unix:uid:1000"}, nil
}

func Example() {
	srv := server.New(server.Config{
		Source:   cacheSource{},
		Attestor: workloadAttestor{},
	})
	g := grpc.NewServer(grpc.Creds(peercred.TransportCredentials()))
	srv.Register(g) // the Workload API registers on the same server

	ln, err := net.Listen("unix", "/run/signet/agent.sock")
	if err != nil {
		return
	}
	_ = g.Serve(ln)
}

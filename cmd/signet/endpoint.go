package main

import (
	"fmt"

	"github.com/signet-mesh/signet/cmd/internal/cli"
)

// agentSocketOption is the --socket flag of a command that connects to the
// agent. Its default is SPIFFE_ENDPOINT_SOCKET when set, else
// defaultAgentSocket; an explicit --socket wins over both.
type agentSocketOption struct {
	flag   string
	getenv func(string) string
}

func (o *agentSocketOption) help() string {
	return "the agent's socket: a path or a unix:// URI (default $" + cli.EndpointSocketEnv + ", else " + cli.DefaultAgentSocket + ")"
}

// path resolves the socket to dial.
func (o *agentSocketOption) path() (string, error) {
	if o.flag != "" {
		p, err := cli.SocketPath(o.flag)
		if err != nil {
			return "", fmt.Errorf("--socket %v", err)
		}
		return p, nil
	}
	if v := o.getenv(cli.EndpointSocketEnv); v != "" {
		p, err := cli.SocketPath(v)
		if err != nil {
			return "", fmt.Errorf("%s=%v", cli.EndpointSocketEnv, err)
		}
		return p, nil
	}
	return cli.DefaultAgentSocket, nil
}

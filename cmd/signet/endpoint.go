package main

import "fmt"

// agentSocketOption is the --socket flag of a command that connects to the
// agent. Its default is SPIFFE_ENDPOINT_SOCKET when set, else
// defaultAgentSocket; an explicit --socket wins over both.
type agentSocketOption struct {
	flag   string
	getenv func(string) string
}

func (o *agentSocketOption) help() string {
	return "the agent's socket: a path or a unix:// URI (default $" + endpointSocketEnv + ", else " + defaultAgentSocket + ")"
}

// path resolves the socket to dial.
func (o *agentSocketOption) path() (string, error) {
	if o.flag != "" {
		p, err := socketPath(o.flag)
		if err != nil {
			return "", fmt.Errorf("--socket %v", err)
		}
		return p, nil
	}
	if v := o.getenv(endpointSocketEnv); v != "" {
		p, err := socketPath(v)
		if err != nil {
			return "", fmt.Errorf("%s=%v", endpointSocketEnv, err)
		}
		return p, nil
	}
	return defaultAgentSocket, nil
}

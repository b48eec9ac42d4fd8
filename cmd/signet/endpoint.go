package main

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// The agent socket: where `signet agent` listens by default, and where the
// client commands (workload fetch, proxy, healthcheck) look for it unless
// --socket or SPIFFE_ENDPOINT_SOCKET says otherwise. The systemd units and
// the Kubernetes manifests in deploy/ use the same path.
const (
	defaultAgentSocket = "/run/signet/agent.sock"
	// endpointSocketEnv is the SPIFFE Workload API's standard variable
	// (a URI such as unix:///run/signet/agent.sock), as go-spiffe and
	// every SPIFFE library read it.
	endpointSocketEnv = "SPIFFE_ENDPOINT_SOCKET"
)

// maxSocketPath is the longest path a Unix socket can be bound to or
// dialed at on Linux: sun_path holds 108 bytes with the terminating NUL.
const maxSocketPath = 107

// socketPath returns the file path of an agent socket given as a plain path
// or as a unix: URI ("unix:///run/signet/agent.sock", "unix:/run/x.sock"),
// the forms SPIFFE_ENDPOINT_SOCKET takes. signet serves the Workload API
// on a Unix socket only, so a tcp: address is an error.
func socketPath(v string) (string, error) {
	if v == "" {
		return "", errors.New("empty socket address")
	}
	scheme, _, hasScheme := strings.Cut(v, ":")
	if !hasScheme || strings.Contains(scheme, "/") || !validScheme(scheme) {
		return checkSocketLen(v)
	}
	if !strings.EqualFold(scheme, "unix") {
		return "", fmt.Errorf("%q: signet serves the Workload API on a Unix socket only: use unix:///path/to/agent.sock", v)
	}
	u, err := url.Parse(v)
	if err != nil {
		return "", fmt.Errorf("%q: not a URI: %v", v, err)
	}
	switch {
	case u.Opaque != "":
		return "", fmt.Errorf("%q: the path of a unix: URI must be absolute (unix:///path/to/agent.sock)", v)
	case u.Host != "":
		return "", fmt.Errorf("%q: a unix: URI has no host (%q): write unix:///path, with three slashes", v, u.Host)
	case u.User != nil, u.RawQuery != "", u.Fragment != "", u.ForceQuery:
		return "", fmt.Errorf("%q: a unix: URI is only a path (unix:///path/to/agent.sock)", v)
	case u.Path == "" || u.Path == "/":
		return "", fmt.Errorf("%q: no socket path", v)
	}
	return checkSocketLen(u.Path)
}

// validScheme reports whether s is a URI scheme (RFC 3986: a letter, then
// letters, digits, "+", "-" or ".").
func validScheme(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}

func checkSocketLen(path string) (string, error) {
	if len(path) > maxSocketPath {
		return "", fmt.Errorf("%q: %d bytes long; a Unix socket path holds at most %d", path, len(path), maxSocketPath)
	}
	return path, nil
}

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

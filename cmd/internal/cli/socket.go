package cli

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// The agent socket: where the agent (`signet agent`, `signet-agent`)
// listens by default, and where the client commands (workload fetch,
// proxy, healthcheck) look for it unless --socket or
// SPIFFE_ENDPOINT_SOCKET says otherwise. The systemd units and
// the Kubernetes manifests in deploy/ use the same path.
const (
	DefaultAgentSocket = "/run/signet/agent.sock"
	// EndpointSocketEnv is the SPIFFE Workload API's standard variable
	// (a URI such as unix:///run/signet/agent.sock), as go-spiffe and
	// every SPIFFE library read it.
	EndpointSocketEnv = "SPIFFE_ENDPOINT_SOCKET"
)

// MaxSocketPath is the longest path a Unix socket can be bound to or
// dialed at on Linux: sun_path holds 108 bytes with the terminating NUL.
const MaxSocketPath = 107

// SocketPath returns the file path of an agent socket given as a plain path
// or as a unix: URI ("unix:///run/signet/agent.sock", "unix:/run/x.sock"),
// the forms SPIFFE_ENDPOINT_SOCKET takes. signet serves the Workload API
// on a Unix socket only, so a tcp: address is an error.
func SocketPath(v string) (string, error) {
	if v == "" {
		return "", errors.New("empty socket address")
	}
	scheme, _, hasScheme := strings.Cut(v, ":")
	if !hasScheme || strings.Contains(scheme, "/") || !validScheme(scheme) {
		return CheckSocketLen(v)
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
	return CheckSocketLen(u.Path)
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

func CheckSocketLen(path string) (string, error) {
	if len(path) > MaxSocketPath {
		return "", fmt.Errorf("%q: %d bytes long; a Unix socket path holds at most %d", path, len(path), MaxSocketPath)
	}
	return path, nil
}

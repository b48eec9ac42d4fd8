package client

import (
	"fmt"
	"net"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
)

// The CA may run as several replicas. An address given to Attest and
// Dial is one host:port or a comma-separated list of them:
//
//   - one host:port whose host name resolves to several IPs (a headless
//     Service, a round-robin DNS name) is dialed through gRPC's DNS
//     resolver, each IP an address of its own;
//   - a list is that list of addresses.
//
// Either way the connection uses pick_first over the addresses in a
// random order: agents spread over the replicas, each agent talks to one,
// and when that one dies gRPC connects to the next while the agent's
// tasks retry their calls with their backoff.

// serviceConfig picks one address at a time, shuffled per agent.
const serviceConfig = `{"loadBalancingConfig":[{"pick_first":{"shuffleAddressList":true}}]}`

// SplitAddress returns the host:port addresses of a CA address (one, or
// a comma-separated list), checking each.
func SplitAddress(address string) ([]string, error) {
	var out []string
	for a := range strings.SplitSeq(address, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("CA address %q: must be host:port", a)
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no CA address")
	}
	return out, nil
}

// target is the gRPC target of a CA address and the options it needs.
func target(address string) (string, []grpc.DialOption, error) {
	addrs, err := SplitAddress(address)
	if err != nil {
		return "", nil, fmt.Errorf("client: %w", err)
	}
	opts := []grpc.DialOption{grpc.WithDefaultServiceConfig(serviceConfig)}
	if len(addrs) == 1 {
		return "dns:///" + addrs[0], opts, nil
	}
	r := manual.NewBuilderWithScheme("signet-ca")
	state := resolver.State{}
	for _, a := range addrs {
		state.Endpoints = append(state.Endpoints, resolver.Endpoint{Addresses: []resolver.Address{{Addr: a}}})
	}
	r.InitialState(state)
	// The CA is authenticated by its SPIFFE ID, not a host name; the
	// authority is the first address, as one address would have it.
	opts = append(opts, grpc.WithResolvers(r), grpc.WithAuthority(addrs[0]))
	return r.Scheme() + ":///ca", opts, nil
}

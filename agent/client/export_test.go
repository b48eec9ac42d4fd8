package client

import (
	"net"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// DialWrapped is Dial with each connection wrapped by wrap after its TLS
// handshake.
func DialWrapped(address string, td spiffeid.TrustDomain, src *Source, wrap func(net.Conn) net.Conn) (*Client, error) {
	return dial(address, td, src, wrap)
}

// WriteBufferSize is writeBufferSize.
const WriteBufferSize = writeBufferSize

package server

import "google.golang.org/grpc"

// nodeReadBufferSize is the read buffer of each agent connection to the
// node API (gRPC's default is 32 KiB). Agents send small requests (CSRs,
// reports) on connections held for days; at 10,000 agents the default
// buffers alone take 320 MB of a CA that otherwise needs less. A larger
// read goes past the buffer, so big requests cost nothing more.
const nodeReadBufferSize = 4 << 10

// fleetServerOptions are the node API's options for a large fleet of
// idle connections.
func fleetServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ReadBufferSize(nodeReadBufferSize)}
}

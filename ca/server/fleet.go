package server

import "google.golang.org/grpc"

// nodeReadBufferSize is the read buffer gRPC puts in front of each agent
// connection to the node API: none (gRPC's default is 32 KiB, and 4 KiB
// was this server's until it was measured). The connection is TLS, and
// crypto/tls already holds each decrypted record whole in memory, so
// gRPC's frame reads are copies out of that record, not system calls; a
// second buffer above it only costs each of thousands of agent
// connections, held for days, its size in live heap (and about twice that
// in resident memory once the GC's headroom is counted).
const nodeReadBufferSize = 0

// nodeWriteBufferSize is how much gRPC batches per agent connection before
// a write (its default is 32 KiB). The buffer is taken from a shared pool
// for each burst of writes and given back after, so an idle connection
// holds none; but a bundle change or a rotation wakes every agent's stream
// at once, and each connection writing then holds one buffer, 2,000
// connections 64 MB of heap for messages of a few KiB. 4 KiB still sends
// a small response (headers, message, trailers) in one write, and a
// larger message in 4 KiB TLS records.
const nodeWriteBufferSize = 4 << 10

// nodeHeaderTableSize is the HPACK dynamic table the node API offers each
// agent connection for the headers the agent sends (HTTP/2's default is
// 4 KiB): none. The table lives as long as the connection, and an agent
// sends a few RPCs an hour on it, so indexing their headers saves a few
// hundred bytes of traffic an hour and costs every connected agent its
// table in heap (1.5 KiB each measured at 2,000 agents, with `signet
// bench fleet --profile-dir`). The agent's gRPC honours the setting and
// sends its headers literally.
const nodeHeaderTableSize = 0

// nodeWindowSize is the flow-control window of each agent connection and
// of each of its streams, for what the agent sends: fixed, which turns off
// gRPC's bandwidth-delay estimation. The estimator answers the first data
// after a quiet spell with a PING to time its round trip; agents send a
// few small requests (CSRs, status reports) after long quiet spells, so
// nearly every one cost a PING and its answer, two more TLS records and
// system calls on each side, and after a bundle change or a rotation the
// whole fleet's did at once. 1 MiB holds the largest request an agent
// sends (a mint call of 500 CSRs) in flight without a window update, and
// bounds what a connection can have buffered well below the 16 MiB the
// estimator grows to. The agent fixes its own windows too (agent/client).
const nodeWindowSize = 1 << 20

// fleetServerOptions are the node API's options for a large fleet of
// idle connections.
func fleetServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ReadBufferSize(nodeReadBufferSize),
		grpc.WriteBufferSize(nodeWriteBufferSize),
		grpc.HeaderTableSize(nodeHeaderTableSize),
		grpc.StaticStreamWindowSize(nodeWindowSize),
		grpc.StaticConnWindowSize(nodeWindowSize),
	}
}

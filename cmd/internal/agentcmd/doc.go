// Package agentcmd is the node agent's command, the one code both binaries
// run: `signet agent` (NewCommand) and the signet-agent binary
// (NewRootCommand, Main: the same flags at the top level, plus healthcheck
// and version). It turns the agent's configuration (Config: file keys,
// SIGNET_* variables and flags, layered by cmd/internal/cli) into an
// agent, its caches and its servers on the agent socket (Workload API,
// SDS, the proxy API, gRPC health), and its telemetry. As a process it
// keeps its memory small: a tighter GC target (agentGCPercent), and the
// memory freed since the start returned to the OS once the agent is ready
// (releaseStartupMemory).
//
// It links nothing of the CA (internal/deptest's
// TestAgentBinaryStaysLight): that is what makes signet-agent light.
package agentcmd

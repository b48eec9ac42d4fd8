package agentcmd

import (
	"context"
	"time"
)

// readyPoll is how often releaseStartupMemory asks whether the agent is
// ready yet.
const readyPoll = 200 * time.Millisecond

// releaseStartupMemory waits until ready reports the agent ready, then
// returns the memory freed since the process started to the OS, once.
// Starting allocates far more than an idle agent keeps (the TLS
// handshakes, attestation, the first sync, the protobuf and gRPC
// machinery warming up); left to the runtime's background scavenger, an
// idle agent would hold those freed pages for a long while, as it has
// little else to do. An agent that then mints a burst of SVIDs gives that
// memory back as well (agent/mint). free is debug.FreeOSMemory outside
// tests. It returns nil, also when ctx ends first.
func releaseStartupMemory(ctx context.Context, ready func(context.Context) error, free func()) error {
	t := time.NewTicker(readyPoll)
	defer t.Stop()
	for ready(ctx) != nil {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
	free()
	return nil
}

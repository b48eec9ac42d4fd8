// Package sync follows the CA's entry sync stream (SyncEntries) into the
// agent's cache: the registration entries this node may mint, the trust
// bundle, the mTLS policy set and the rotate generation.
//
//	s := sync.New(sync.Config{TrustDomain: td, Cache: c, CA: conn, Minter: m, Scheduler: sched, ...})
//	err := s.Run(ctx) // until ctx ends, reconnecting with backoff
//
// It is the one place where what the CA says enters the agent; the other
// tasks act on what it hands them:
//
//   - new and changed entries, and after a reconnect every entry still
//     without an SVID, go to the mint queue (agent/mint);
//   - deleted entries leave the cache and the renewal schedule
//     (agent/rotate), and the rotate generation goes to the schedule;
//   - a new bundle goes to the cache first (workloads are served it at
//     once), then to the node identity (agent/nodesvid: it authenticates
//     the CA with it and keeps it on disk), then to the status report
//     (agent/report): the CA hears of a root once it is stored. The roots
//     and keys the previous bundle message held are not parsed again;
//   - the mTLS policy set goes to agent/policy.
//
// An update the CA split across messages (more) is applied once whole. A
// stream that breaks after it was up reconnects at a random point of the
// window the CA's last message asked for (reconnect_spread_ms, growing
// with the fleet), so a CA restart is not met by the whole fleet at once;
// later attempts follow the backoff, which honours the CA's retry hints.
//
// A reconnect tells the mint queue the CA is back, so a mint retry need not
// wait out its backoff. Run stops with an error only when the CA refuses
// the node's identity for good (nodeapi.NodeRejection).
//
// The package is named for its job, like SPIRE's manager/sync; import it
// under another name (agentsync) beside the standard library's sync.
package sync

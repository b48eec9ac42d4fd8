// Package mint gets the agent's workload SVIDs signed by the CA.
//
// X509-SVIDs go through the Minter, a queue: entries that need an SVID
// (new, changed, or due for renewal) are queued, and Run mints everything
// queued in batched MintX509SVIDs calls (agent/client makes the CSRs of
// the next batch while the CA signs one), each with a key made here on the
// node. A burst (a new node with 50,000 entries) is minted a chunk of
// 1,000 at a time, so that only one chunk's keys, CSRs and responses are
// in memory at once. The results reach the cache as one change per chunk,
// and each SVID's renewal is scheduled (agent/rotate).
//
//	m := mint.New(mint.Config{Cache: c, CA: conn, Scheduler: sched, NewKey: newKey})
//	go m.Run(ctx)
//	m.Queue(entryID)  // agent/sync for new entries, agent/rotate when due
//
// While the CA fails, the whole set is retried with backoff
// (internal/backoff), but never later than a quarter of the remaining life
// of an SVID being replaced, and at once when the entry sync reconnects
// (CAReachable). An entry the CA no longer authorizes (NotFound) is
// dropped. Run stops with an error only when the CA refuses the node's
// identity for good (nodeapi.NodeRejection).
//
// JWT-SVIDs are minted on demand (JWT): each is for the audience one
// workload asks for, so nothing is queued or cached.
package mint

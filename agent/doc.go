// Package agent is the node agent: it gives the node an identity with the
// CA, follows the CA's entries for the node, keeps an SVID minted and
// rotated for each with a key made here, and feeds the cache that the
// Workload API and SDS serve from.
//
//	a, err := agent.New(agent.Config{ServerAddress: addr, TrustDomain: td, TrustBundle: roots,
//		JoinToken: tok, DataDir: dir, KeyPassphrase: pass})
//	ln, err := a.ListenSocket("/run/signet/agent.sock")
//	go agent.ServeSocket(ctx, ln, workloadAPI.Register, sds.Register)
//	err = a.Run(ctx)
//
// # One job per package
//
// An Agent is a set of tasks, like SPIRE's manager: Run is an errgroup of
// their Run(ctx) methods, and no goroutine outlives it. Each task owns its
// state; they meet in the cache (agent/cache) and over one connection to
// the CA (agent/client), and each declares the few calls it needs of the
// others as a small interface:
//
//   - agent/nodesvid: the node identity: load the stored node SVID or
//     attest with a join token (or, on Kubernetes, the pod's projected
//     service account token, at every start), renew it, keep it under the
//     data dir, and give it up when the CA refuses it for good;
//   - agent/sync: the CA's entry sync stream into the cache (entries,
//     bundle, mTLS policies, rotate generation);
//   - agent/mint: the mint queue (batched calls, retries with backoff), and
//     JWT-SVIDs on demand;
//   - agent/rotate: when each SVID is renewed (workload and node), with the
//     clock and the source of jitter injected;
//   - agent/report: what the agent tells the CA (applied bundle revision,
//     the proxies' connection counts);
//   - agent/policy: the mTLS policy set, for the proxies.
//
// The servers on the agent socket are their own packages: agent/workloadapi
// (the SPIFFE Workload API), agent/proxyapi (for `signet proxy`) and
// sds/server (Envoy SDS), all attesting callers with agent/attestor (with
// agent/k8sattest as a plugin on Kubernetes: the caller's pod).
//
// # Failure
//
// When the CA is unreachable, every call backs off exponentially with full
// jitter (internal/backoff, drawing from Config.Rand) and the cache keeps
// serving the SVIDs it holds until they expire. When the CA refuses the
// node's identity for good (evicted, superseded, unknown), the agent says
// so in one ERROR line with what to do, stops talking to the CA, keeps
// serving what it holds until it expires, and Ready reports not ready (see
// agent/nodesvid).
//
// # The socket
//
// ListenSocket refuses a socket path another live agent serves, removes a
// stale one, limits connections per local user (MaxConnsPerUID), and on
// shutdown removes the path only if it is still its own; Ready checks it
// is.
package agent

// Package agent is the node agent: it attests the node to the CA with a
// join token (once; the node SVID is kept under the data dir), follows the
// CA's entry-sync stream, mints an SVID for every entry of the node with a
// key made here (in batched calls), rotates each at half its life with
// jitter, and feeds the cache that the Workload API and SDS serve from.
//
//	a, err := agent.New(agent.Config{ServerAddress: addr, TrustDomain: td, TrustBundle: roots,
//		JoinToken: tok, DataDir: dir, KeyPassphrase: pass})
//	go a.Run(ctx)
//	// serve a.Cache() over the Workload API and SDS
//
// When the CA is unreachable, every call backs off exponentially with full
// jitter (internal/backoff) and the cache keeps serving the SVIDs it holds
// until they expire.
//
// The agent also keeps the mTLS policy set that comes with the entry sync
// (MTLSPolicies, served to proxies by agent/proxyapi), and sums the inbound
// connection counts its proxies report (AddConnections), which it forwards
// to the CA in ReportStatus every ConnectionReportInterval when there are
// any (see policy.go).
package agent

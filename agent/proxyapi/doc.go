// Package proxyapi serves signet.agent.v1.ProxyService on the agent's
// socket: what a sidecar proxy (`signet proxy`) needs from its agent besides
// certificates, which come over SDS.
//
//   - WatchPolicy streams the effective mTLS mode of the proxy's workload on
//     each of its inbound ports, computed by internal/mtlspolicy from the
//     policy set the CA sent with the entry sync, and a new decision
//     whenever a policy change alters it.
//   - ReportConnections takes the proxy's inbound connection counts (mTLS,
//     plaintext, refused or would-be-refused, by port, with the plaintext
//     sources), which the agent forwards to the CA for `signet mtls status`
//     and the readiness check of `signet mtls set --mode STRICT`.
//
// Callers are attested like Workload API clients, from their Unix peer
// credentials: a proxy may only watch, or report for, a SPIFFE ID of an
// entry whose selectors it satisfies (the IDs it could get an SVID for).
//
//	srv := proxyapi.New(proxyapi.Config{Cache: c, Attestor: att, Policies: a, Reporter: a})
//	agent.ServeSocket(ctx, ln, func(g *grpc.Server) { wl.Register(g); sds.Register(g); srv.Register(g) })
//
// The package does not import package agent: cmd/signet passes the Agent as
// Policies and Reporter.
package proxyapi

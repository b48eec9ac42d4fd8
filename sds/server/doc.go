// Package server implements Envoy's Secret Discovery Service (SDS v3,
// envoy.service.secret.v3.SecretDiscoveryService) for the node agent: proxies
// on the node fetch their SVIDs and trust bundles over the agent's Unix
// socket and are pushed every rotation.
//
// The package does not import the agent. It needs a Source (the agent's
// cache, seen through one caller's selectors) and an Attestor (which turns
// the caller's Unix peer credentials into selectors); cmd/signet adapts
// agent/cache and the workload attestor to them.
//
// The messages are signet's wire-compatible subset of Envoy's
// (proto/signet/envoy/v1) and the gRPC service is described by hand
// (service.go): go-control-plane's generated packages would cost every
// signet process about 3 MB of mapped binary and 0.4 MB of heap at start
// (issue 19). The tests talk to the server with go-control-plane's own
// client and types, so the wire format stays Envoy's.
//
//	srv := server.New(server.Config{
//		Source:   cacheAdapter,    // server.Source
//		Attestor: workloadAdapter, // server.Attestor
//		Logger:   logger,
//	})
//	g := grpc.NewServer(grpc.Creds(peercred.TransportCredentials()))
//	srv.Register(g)       // next to the Workload API, on the same socket
//	err := g.Serve(ln)    // ln: the agent's Unix socket
//
// Each call is attested from the connection's peer credentials; a caller that
// cannot be attested gets PermissionDenied. A stream subscribes to the
// Source once, with the caller's selectors, and from then on reacts to two
// things only: the client's requests and new snapshots from the Source. There
// is no polling; a snapshot is pushed the moment it arrives.
//
// # Secret names
//
//   - "default": the caller's first SVID, as a tls_certificate (PEM chain and
//     PEM PKCS#8 key, inline).
//   - a SPIFFE ID, "spiffe://example.org/web": that SVID, as a
//     tls_certificate, if the caller is entitled to it.
//   - "ROOTCA": the own trust domain's bundle, as a validation_context with
//     trusted_ca.
//   - "ALL": a validation_context for Envoy's SPIFFE certificate validator
//     (custom_validator_config "envoy.tls.cert_validator.spiffe"), listing
//     the bundle of every trust domain, own and federated.
//   - "spiffe://<trust domain>": that trust domain's bundle, as a
//     validation_context with trusted_ca.
//
// There is no wildcard: SDS clients name their secrets, and a request with
// no names subscribes to nothing.
//
// Bundles are for callers with an identity, as on the Workload API: a
// caller that holds no SVID (no registration entry matches it) gets no
// secret at all, "ROOTCA", "ALL" and trust domain bundles included. They
// appear as soon as its first SVID does.
//
// # Versions and nonces
//
// A secret's version is the first 8 bytes, in hex, of the SHA-256 of its
// deterministic protobuf encoding: it changes exactly when the content does,
// and is the same on every stream and across agent restarts. version_info
// (system_version_info in delta) is a hash of the sorted names and versions
// of the secrets the client holds from this stream, so two proxies with the
// same secrets report the same version. Nonces come from one counter per
// server and are never reused while it runs.
//
// # StreamSecrets (state of the world)
//
//   - The first request is answered with every requested secret that exists.
//   - A request whose response_nonce is not the latest nonce sent on the
//     stream is stale: it answers a response the client had not yet seen
//     the successor of, and is ignored entirely (its NACK is not counted, its
//     resource_names are not applied); the client's next request supersedes
//     it. Until the stream has sent a response, any nonce is accepted.
//   - ACK (latest nonce, no error_detail): the acknowledged version advances.
//     Nothing is sent.
//   - NACK (latest nonce, error_detail set): the acknowledged version stays,
//     the rejection is logged and counted (Metrics.Rejected), and nothing is
//     resent: the stream remembers the rejected version as sent, so only a
//     new version will be pushed.
//   - resource_names may change in any request: newly requested secrets are
//     sent at once (even if an earlier subscription already sent them);
//     dropped ones are forgotten and no longer pushed.
//   - A new snapshot pushes only the secrets that changed, and only to
//     streams that subscribe to them: an SVID rotation reaches streams
//     watching "default" or that SPIFFE ID, not a stream watching only
//     "ROOTCA". SotW responses for secrets may carry a subset of the
//     subscribed resources; Envoy keeps the others.
//
// # DeltaSecrets (incremental)
//
// Each resource carries its own version. initial_resource_versions of the
// first request are honoured: a secret the client already has at the current
// version is not resent. Subscribing sends the secret (again, if it was
// already subscribed, as the protocol requires); unsubscribing sends nothing
// and stops pushes. ACK and NACK are told apart by error_detail, as in SotW,
// but a stale nonce never makes the server drop subscription changes.
//
// # Names the caller may not have
//
// A name the caller is not entitled to (an SVID of another workload), a
// trust domain the agent does not know, a bundle not yet received, or a
// string that is not a secret name are all treated the same way: the secret
// "does not exist" for this caller. The xDS protocol ("Knowing When a
// Requested Resource Does Not Exist") gives each variant its own way of
// saying so:
//
//   - SotW has no explicit mechanism; clients wait for a timeout (Envoy's
//     initial_fetch_timeout) and must be prepared for the resource to appear
//     later, and servers must remember what each client requested and send a
//     resource that springs into existence later. StreamSecrets therefore
//     leaves the secret out of its
//     responses, logs it once per stream, keeps the stream open, and pushes
//     the secret as soon as it exists (say, a registration entry is added).
//     Failing the stream instead (as SPIRE does) would make Envoy reconnect
//     in a loop and lose the secrets it may have on the same stream.
//     resource_errors is not used: Envoy does not implement it.
//   - Delta lists the name in removed_resources, which the protocol defines
//     as "does not exist" for a subscribed resource, so the client knows at
//     once; it is said once, and again only if the secret existed in between.
//   - FetchSecrets, a one-shot call with no later update, fails: NotFound
//     for a valid name that is not available (whether it exists for someone
//     else is not revealed), InvalidArgument for a malformed name.
//
// # Resource use
//
// An idle stream costs its gRPC handler goroutine, blocked receiving the
// next request, one subscription, and a few small maps (name to version).
// Pushes run on a goroutine per stream that lives only while there is
// something to send, so a rotation briefly starts one per watching stream,
// and pushes to one stream never wait for another. Each snapshot memoizes
// its encoded secrets, so streams sharing a snapshot encode each secret
// once.
package server

// Package workloadapi serves the SPIFFE Workload API (the X.509-SVID and
// JWT-SVID profiles) to the workloads on the agent's node, over the agent's
// Unix socket. It holds no state of its own: each call attests the caller
// from its Unix peer credentials, and serves what the agent's cache holds
// for the caller's selectors.
//
//	srv := workloadapi.New(workloadapi.Config{
//		Cache:     c,                                 // *cache.Cache, fed by the agent
//		Attestor:  attestor.New(attestor.Config{}),
//		JWTMinter: client,                            // asks the CA for JWT-SVIDs
//	})
//	g := grpc.NewServer(grpc.Creds(peercred.TransportCredentials()))
//	srv.Register(g)
//	go g.Serve(ln) // ln from peercred.Listen(socket, 0o777)
//
// The streaming calls (FetchX509SVID, FetchX509Bundles, FetchJWTBundles)
// send the caller's complete state at once and again whenever it changes:
// an SVID renewed, an entry changed, a new root in the bundle. They never
// end by themselves while the caller stays entitled, so stop the gRPC
// server with Stop (or GracefulStop with a deadline, then Stop).
//
// Errors follow the SPIFFE Workload Endpoint standard: a call without the
// "workload.spiffe.io: true" metadata gets InvalidArgument; a call before
// the agent has its trust bundle gets Unavailable; a caller whose
// attestation fails, or who matches no registration entry, gets
// PermissionDenied (a stream that loses its last entry ends with it too).
// The WIT-SVID profile is not implemented and answers Unimplemented.
//
// # Serving rules
//
//   - Each X509SVIDResponse carries every unexpired SVID of the caller,
//     leaf first with its chain, its PKCS#8 key and the trust domain's
//     roots, plus foreign trust domains' roots in federated_bundles. The
//     first SVID is the default identity; SVIDs are ordered by entry ID.
//   - Hints are unique within a response: of several SVIDs with one hint,
//     only the first is sent.
//   - FetchJWTSVID mints one JWT-SVID per SPIFFE ID the caller holds (or
//     for the requested one), through Config.JWTMinter. A request with
//     more audiences than nodeapi.MaxJWTAudiences, or one longer than
//     nodeapi.MaxJWTAudienceBytes (or empty), gets InvalidArgument naming
//     the limit before anything is sent to the CA.
//   - ValidateJWTSVID needs no registration: any local process may ask
//     whether a token is valid, as the validation reveals nothing secret.
package workloadapi

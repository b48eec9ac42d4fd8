// Package federation is SPIFFE federation on the CA side: this trust
// domain's bundle endpoint, and the relationships with the trust domains
// it trusts, each with the last good bundle fetched from theirs (SPIFFE
// Trust Domain and Bundle, sections 4 and 5).
//
// Serving: NewHandler answers each GET with the current bundle as a SPIFFE
// bundle document (a JWKS, "x509-svid" keys with x5c, "jwt-svid" keys
// with kid) whose spiffe_sequence is the bundle revision (ca/bundle), so
// a root rotation step serves a higher sequence at once. ServeEndpoint
// serves it over TLS with the certificate the caller supplies: the CA
// server's SVID for https_spiffe, or WebCertificate's files for
// https_web.
//
// Trusting: a Manager stores relationships (Create, Delete) and refreshes
// them (Run, Refresh):
//
//	m, _ := federation.New(federation.Config{Store: st, TrustDomain: td})
//	r, err := m.Create(ctx, actor, federation.Params{TrustDomain: "other.org",
//		BundleEndpointURL: "https://bundle.other.org:8443",
//		EndpointSPIFFEID: "spiffe://other.org/signet/server", InitialBundle: pem})
//	go m.Run(ctx) // fetch each on its refresh hint, backoff on failure
//	bundles, version, err := federation.Bundles(tx) // for agents
//
// Each relationship and its last good bundle are one record in the
// store's meta bucket (so every store backend holds them); every change
// and every bundle update is one transaction with its audit record and a
// new store revision, which wakes the agents' entry-sync streams.
//
// # Refusals
//
// A fetched bundle is refused, logged and audited (an audit record of type
// federation.bundle_updated with outcome failure), and the last good one
// kept, when the https_spiffe endpoint presents another SPIFFE ID
// (ErrWrongEndpointID), an X.509 authority names another trust domain in
// its URI SAN (ErrWrongTrustDomain), spiffe_sequence goes below the
// stored one (ErrSequenceBackwards), or the answer is no usable bundle
// (ErrMalformedBundle: not a JWKS, no X.509 authority, too large). An
// endpoint that cannot be reached is a FetchError: logged, retried with
// backoff, not audited.
//
// # Caveats
//
// The refresh state (last success, last error, next attempt) lives in the
// Manager, not the store: with several servers on one store each keeps
// its own and each fetches.
package federation

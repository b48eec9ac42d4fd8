// Package rotation manages the CA's authorities: it creates (or imports)
// the root, keeps an intermediate and a JWT key fresh, hands them to the
// *ca.CA, maintains the trust bundle and its revision, and keeps the CA
// server's own TLS certificate.
//
// Wiring it up:
//
//	c := ca.New(ca.Config{TrustDomain: td})
//	m, err := rotation.New(rotation.Config{Store: st, Keys: km, CA: c, TrustDomain: td})
//	if err != nil { ... }
//	if err := m.Init(ctx); err != nil { ... } // first start: root + intermediate + JWT key
//	go m.Run(ctx)                              // rotates until ctx is done
//	tlsConfig.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
//		return m.ServerTLSCertificate()
//	}
//	b, err := m.Bundle(ctx) // or rotation.BundleFromTx inside a transaction
//
// # Authorities
//
// Every authority is a store.Authority moving through prepared -> active
// -> retiring -> retired:
//
//   - Roots are trust anchors. The first Init creates one (or imports
//     Config.ImportRoot / ImportIntermediate) as active. Roots are never
//     rotated automatically: an operator prepares a new one (it enters the
//     bundle), activates it once agents have it, and retires the old one.
//     Every non-retired root is in the bundle.
//   - Intermediates sign SVIDs. There is one active intermediate, signed
//     by the active root; at half its life (or when the active root
//     changes) a new one replaces it and the old one is retired. They are
//     not in the bundle: SVIDs carry theirs in the chain, so an
//     intermediate rotation does not change the bundle.
//   - JWT keys sign JWT-SVIDs and are in the bundle. At half of the active
//     key's life a successor is prepared (bundle changes); at three
//     quarters it becomes active and the old key retiring; at the old
//     key's NotAfter it is retired (bundle changes). Tokens are capped at
//     their key's NotAfter, so no live token loses its key.
//
// Whenever the bundle's roots or JWT keys change, the same transaction
// takes a store revision and records it under BundleRevisionKey.
//
// # Root rotation
//
// Each step is one transaction that also re-issues the intermediate under
// whichever root is active, so a crash leaves the state before or after
// the step, never between (tests crash the process at Config.CrashPoint):
//
//	res, _ := m.PrepareRoot(ctx, rotation.PrepareParams{})           // new root in the bundle
//	// ...wait until every connected agent applied res.Authority.BundleRevision
//	_, err := m.ActivateRoot(ctx, rotation.ActivateParams{Agents: applied, RotateNow: true})
//	// ...wait until no current SVID chains to the old root
//	_, err = m.RetireRoot(ctx, rotation.RetireParams{})              // old root leaves the bundle
//
// ActivateRoot refuses (ErrUnsafe) while a connected agent has not applied
// the bundle revision at which the root entered the bundle, RetireRoot
// while the newest unexpired SVID of some entry and node, or of some node,
// chains to the root; Force overrides both. RotateNow increments the
// rotate generation (RotateGenerationKey) that the node API sends to
// agents, which then re-mint every SVID at once, spread with jitter.
// PrepareRoot can also import a root, or make a CSR for the organisation's
// CA and import the signed certificate later.
//
// While a root is retiring, the active intermediate is also issued by it
// (cross-signed, ensureCrossSigned) and the CA sends that certificate in
// every SVID's chain, so that peers still trusting only the old root
// accept SVIDs of the new one; it is dropped when the old root retires.
//
// With Config.AutoRotateRoots, Run takes these steps itself (schedule.go):
// prepare at half of the active root's life, activate at five sixths once
// every connected agent trusts the new root, retire the old root once no
// current SVID chains to it. The checks are the operator's, never forced;
// a root imported from the organisation's PKI is left to the operator.
//
// Run logs a warning, hourly, for every root or active intermediate that
// is expiring soon (ExpiringSoon); SecondsToExpiry is the same data for
// metrics, Authorities adds SVID counts for `signet root status`.
//
// # Caveats
//
// There is one active intermediate per store: several CA servers sharing
// one store (etcd) would need one per server.
//
// Keys are created inside the store transaction; if it then fails, the
// new key files are left unreferenced in the key directory.
package rotation

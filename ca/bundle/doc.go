// Package bundle is the trust domain's trust bundle as the CA keeps it:
// the roots and JWT keys agents and workloads trust, the bundle revision
// that tells agents it changed, and the rotate generation that makes them
// re-mint every SVID at once.
//
// The bundle is derived from the authorities in the store (package
// ca/rotation creates and moves them); nothing but the two counters is
// stored for it. Read it inside a transaction to return it consistently
// with other state, or on its own:
//
//	b, err := bundle.FromTx(tx, td)   // inside a View or Update
//	b, err := bundle.Read(ctx, st, td) // one View of its own
//	pool := b.X509Bundle()             // go-spiffe's form
//	doc, err := b.SPIFFEBundle().Marshal()
//
// Whoever changes the set of roots or JWT keys in the bundle takes a new
// revision in the same transaction:
//
//	rev, err := bundle.BumpRevision(tx)
//
// # Roots and anchors
//
// A root authority is either a self-signed root (it is its own trust
// anchor) or a CA certificate imported from the organisation's PKI, whose
// chain's self-signed certificates are the anchors. ParseRoot splits a
// root authority into the certificates an intermediate sends above
// itself (Upstream) and the trust anchors (Anchors).
package bundle

// Package rotation manages the CA's authorities: it creates (or imports)
// the root, keeps this server's intermediate and JWT key fresh, takes the
// operator's root rotation steps, and hands the signing authorities to the
// *ca.CA. The trust bundle they make is read through ca/bundle; the
// server's own TLS certificate is ca/servercert's.
//
// Wiring it up:
//
//	c := ca.New(ca.Config{TrustDomain: td})
//	m, err := rotation.New(rotation.Config{Store: st, Keys: km, CA: c, TrustDomain: td})
//	if err != nil { ... }
//	if err := m.Init(ctx); err != nil { ... } // first start: root + intermediate + JWT key
//	go m.Run(ctx)                              // rotates until ctx is done
//
// # One job per file
//
//   - plan.go: the planner. next(authorities, now, server) is a pure
//     function that says what the authorities need (a root, a new
//     intermediate, a cross-signature, a JWT key, state transitions);
//     nextEvent says when to look again.
//   - prepare.go: the preparer. It makes the keys and signs the
//     certificates a step needs, outside any store transaction, so no
//     mint ever waits for a key generation or a KMS call. Keys are named
//     after the authority they are for ("intermediate-<id>").
//   - commit.go: the commit. One short transaction re-reads the
//     authorities, checks they are still what the step was planned from
//     (compare-and-swap on a digest of them), and writes the step's
//     authorities, bundle revision and audit record together. On a
//     conflict the step's keys are deleted and it is planned again from a
//     fresh read (up to three times, then ErrConflict); nothing enters the
//     signer cache or reaches the CA before the commit.
//   - roots.go: the operator's root steps, each an op that checks the
//     step against the authorities read and changes them; csr.go and
//     import.go bring roots from the organisation's PKI.
//   - schedule.go: the automatic root schedule; status.go: what `signet
//     root status` and the expiry metrics show.
//
// # Authorities
//
// Every authority is a store.Authority moving through prepared -> active
// -> retiring -> retired:
//
//   - Roots are trust anchors shared by every server of the store. The
//     first Init creates one (or imports Config.ImportRoot /
//     ImportIntermediate) as active. Roots are never rotated
//     automatically unless Config.AutoRotateRoots: an operator prepares a
//     new one (it enters the bundle), activates it once agents have it,
//     and retires the old one. Every non-retired root is in the bundle.
//   - Intermediates sign SVIDs. Each server (Config.ServerName, recorded
//     on the authority) has one active intermediate, signed by the active
//     root; at half its life (or when the active root changes) a new one
//     replaces it and the old one is retired. They are not in the bundle:
//     SVIDs carry theirs in the chain.
//   - JWT keys sign JWT-SVIDs and are in the bundle, one set per server.
//     At half of the active key's life a successor is prepared (bundle
//     changes); at three quarters it becomes active and the old key
//     retiring; at the old key's NotAfter it is retired (bundle changes).
//     Tokens are capped at their key's NotAfter, so no live token loses
//     its key.
//
// Whenever the bundle's roots or JWT keys change, the same transaction
// takes a new bundle revision (bundle.BumpRevision).
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
// while the current SVID of some entry and node, or of some node, chains
// to the root (read from the store's current-SVID index, so the check
// costs what the entries and nodes do, not the SVIDs ever issued); Force
// overrides both. RotateNow increments the rotate generation
// (bundle.RotateGenerationKey) that the node API sends to agents, which
// then re-mint every SVID at once, spread with jitter (each server sends
// it once its own intermediate is under the new root, so that replicas
// sharing the store never answer the re-mint under the old one; see
// ca/api/node_rotate.go). PrepareRoot can
// also import a root, or make a CSR for the organisation's CA and import
// the signed certificate later.
//
// While a root is retiring, the active intermediate is also issued by it
// (cross-signed) and the CA sends that certificate in every SVID's chain,
// so that peers still trusting only the old root accept SVIDs of the new
// one; it is dropped when the old root retires.
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
// # Several servers on one store
//
// Nothing here assumes one server per store: each server plans only its
// own intermediate and JWT keys (by ServerName), the commit's
// compare-and-swap makes concurrent steps of different servers safe, and
// a step that loses the race leaves no key behind. The root's key must be
// reachable by every server that signs its intermediates: a KMS or HSM,
// or a key manager that shares soft root keys (ca/server does, encrypted,
// through an etcd store). Config.Leading keeps the automatic root
// schedule on one server; Reconcile moves this server's intermediate
// under a root another server activated.
//
// # Caveats
//
// A process that dies between making a step's keys and committing it
// leaves those keys behind (the commit path deletes them only on a
// conflict or a refusal). Their names say which authority they were for,
// and no stored authority refers to them.
package rotation

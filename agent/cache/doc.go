// Package cache holds what the node agent serves to workloads: the
// registration entries the agent is authorized for, the current X509-SVID
// of each, and the trust bundles. Workload-facing servers (the Workload API,
// SDS) subscribe to it with a workload's selectors and receive the full,
// current state for that workload whenever it changes.
//
// The cache is passive: it never talks to the CA. The agent's sync loop
// feeds it from outside:
//
//	c := cache.New(cache.Config{TrustDomain: td, Clock: clk, Logger: log})
//	// on every SyncEntries message:
//	for _, e := range c.ApplyEntries(msg.Full, entries, msg.DeletedEntryIds) {
//		// e is new or changed: mint an SVID for it, then
//		c.SetSVID(e.ID, svid)
//	}
//	c.SetBundle(x509Bundle, jwtBundle, msg.Bundle.Revision)
//	// and on every renewal (see package rotate):
//	c.SetSVID(entryID, renewed)
//
// A server, for a workload with attested selectors:
//
//	sub := c.Subscribe(selectors)
//	defer sub.Close()
//	for u := range sub.Updates() {
//		// u.Identities: the workload's usable SVIDs; u.Bundle: trust roots
//	}
//
// # Delivery
//
// Updates is a channel with room for one Update, and the cache replaces an
// unread Update with a newer one, so a slow reader never blocks the cache
// and always reads the newest full state. The first Update arrives as soon
// as the workload has at least one usable SVID and the bundle is set, or at
// once if it matches no entry (so a server can answer PermissionDenied);
// SubscribeBundles, for bundle-only consumers, does not wait for an SVID.
// After that a subscriber is woken only when its own state changes: one of
// its identities (an SVID renewed, an entry it holds changed or deleted),
// the bundles, or losing its last entry. An SVID renewed for entry X wakes
// only subscribers whose selectors match X.
//
// An SVID past its NotAfter (by Config.Clock) is never put in an Update.
// PruneExpired drops expired SVIDs and pushes the shrunken state to their
// subscribers.
//
// # Cost
//
// Subscribers with the same selector set share a group, and groups are
// indexed by selector, each group keeping the set of entries it matches and
// each entry the set of groups matching it. So with E entries, G groups and
// m entries per group:
//   - SetSVID for entry X builds one Update per group matching X,
//     O(m log m) each, and hands it to that group's subscribers;
//   - ApplyEntries tests a new or re-selected entry against the groups
//     that share its least common selector, not against all G;
//   - Subscribe with a new selector set looks only at the entries sharing
//     one of its selectors; with a known set it costs one Update build;
//   - SetBundle and SetFederatedBundles wake every group: O(G·m log m).
//
// Updates are shared by all subscribers of a group and must be treated as
// read-only, as must the SVIDs and bundles in them.
//
// # Memory
//
// An agent may hold tens of thousands of SVIDs (issue 16: 50,000 entries
// under 150 MB), so what the cache keeps for each is small. SetSVID takes a
// parsed x509svid.SVID, as the agent's client returns it, and keeps an SVID
// instead: the leaf's DER, the private key as PKCS #8 DER (the forms the
// Workload API and SDS serve, so serving parses nothing), NotBefore and
// NotAfter, and the intermediates, interned so that the SVIDs signed under
// one intermediate share one copy. SVID.X509SVID parses it back for the rare
// caller that needs a crypto.Signer. The selector indexes hold a single
// entry or group without a map. BenchmarkHeapPerSVID reports the heap held
// per SVID, entry included (about 1 KB, most of it the leaf's DER), and
// TestHeapPerSVID bounds it.
//
// # Federation
//
// SetFederatedBundles holds every foreign trust domain's bundle the CA
// sends, but an Update carries only those that one of its Entries names
// in FederatesWith: a workload trusts only the domains its registration
// says it federates with.
package cache

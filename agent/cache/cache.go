package cache

import (
	"cmp"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/signet-mesh/signet/agent/attestor"
	"github.com/signet-mesh/signet/agent/internal/logkey"
	"github.com/signet-mesh/signet/agent/rotate"
	"github.com/signet-mesh/signet/internal/clock"
)

// Entry is a registration entry the agent is authorized to mint SVIDs for.
type Entry struct {
	ID       string
	SPIFFEID spiffeid.ID
	// Selectors a workload must all have to get this entry's identity.
	Selectors []string
	X509TTL   time.Duration
	JWTTTL    time.Duration
	DNSNames  []string
	// Hint tells a workload holding several SVIDs what this one is for
	// ("internal", "external"); the Workload API serves at most one SVID
	// per hint.
	Hint string
	// Revision is the store revision at which the entry last changed.
	Revision int64
	// FederatesWith names the trust domains ("other.org") whose federated
	// bundles the entry's workloads get.
	FederatesWith []string
}

// Identity is an entry with its current, unexpired SVID. The SVID's key was
// generated on this node.
type Identity struct {
	Entry Entry
	SVID  *SVID
}

// Update is the complete state served to one workload. Updates are shared
// between subscribers and must not be modified.
type Update struct {
	// Entries are all entries the workload matches, with or without a
	// usable SVID, ordered by entry ID. None means the workload is not
	// entitled to any identity.
	Entries []Entry
	// Identities are the entries that have an unexpired SVID, ordered by
	// entry ID, so that the first one (the Workload API's default identity)
	// stays the same across updates. Operators who need a particular SVID
	// to come first should tell them apart by hint instead.
	Identities []Identity
	// Bundle and JWTBundle are the trust domain's bundles, nil until set.
	Bundle    *x509bundle.Bundle
	JWTBundle *jwtbundle.Bundle
	// BundleRevision is the revision of the bundle as given to SetBundle.
	BundleRevision int64
	// FederatedBundles and FederatedJWTBundles are other trust domains'
	// bundles, ordered by trust domain name: those that Entries federate
	// with.
	FederatedBundles    []*x509bundle.Bundle
	FederatedJWTBundles []*jwtbundle.Bundle

	derivedMu sync.Mutex
	derived   map[any]any
}

// Derived returns convert(u), computed once per Update and key however
// many subscribers share the Update: consumers that serve Updates in
// another form (a Workload API response, an SDS snapshot) build and encode
// each state once, and every stream holds the same copy. Each caller
// passes its own key (an unexported type) and always the same convert for
// it.
func (u *Update) Derived(key any, convert func(*Update) any) any {
	u.derivedMu.Lock()
	defer u.derivedMu.Unlock()
	if v, ok := u.derived[key]; ok {
		return v
	}
	v := convert(u)
	if u.derived == nil {
		u.derived = map[any]any{}
	}
	u.derived[key] = v
	return v
}

// Config configures a Cache.
type Config struct {
	// TrustDomain is the agent's trust domain; entries and bundles of
	// other trust domains are refused. Required.
	TrustDomain spiffeid.TrustDomain
	// Clock decides which SVIDs have expired. Nil means the wall clock.
	Clock clock.Clock
	// Logger receives notes on entries applied or refused. Nil discards.
	Logger *slog.Logger
}

// Cache is the agent's store of entries, SVIDs and bundles. It is safe for
// concurrent use.
type Cache struct {
	td    spiffeid.TrustDomain
	clock clock.Clock
	log   *slog.Logger

	mu      sync.Mutex
	records map[string]*record
	// recordsBySelector and groupsBySelector index entries and subscriber
	// groups by each of their selectors.
	recordsBySelector map[string]set[*record]
	groups            map[string]*group // by selector set key
	groupsBySelector  map[string]set[*group]

	bundle     *x509bundle.Bundle
	jwtBundle  *jwtbundle.Bundle
	bundleRev  int64
	fedBundles []*x509bundle.Bundle
	fedJWT     []*jwtbundle.Bundle
}

// record is an entry with its SVID and the groups whose selectors match it.
type record struct {
	entry  Entry
	svid   *SVID
	groups set[*group]
}

// group is the subscribers that share one selector set, with the entries
// that set matches.
type group struct {
	key       string
	selectors []string // sorted, no duplicates
	matched   map[string]*record
	subs      map[*Subscription]struct{}
	// last is the Update last built for the group's subscribers. A new
	// subscriber gets it too while it is still exact, so that streams
	// opened one after another share one Update, and whatever consumers
	// derive from it (encoded responses) is built once.
	last *Update
}

// New returns an empty Cache: not Ready until SetBundle.
func New(cfg Config) *Cache {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Cache{
		td:                cfg.TrustDomain,
		clock:             clock.OrReal(cfg.Clock),
		log:               cfg.Logger.With(logkey.Component, "cache"),
		records:           make(map[string]*record),
		recordsBySelector: make(map[string]set[*record]),
		groups:            make(map[string]*group),
		groupsBySelector:  make(map[string]set[*group]),
	}
}

// ApplyEntries brings the entries up to date: upserted entries are added or
// replace the entry with the same ID, entries named in deletedIDs are
// removed, and when full is set every entry not in upserted is removed too.
// Entries of another trust domain, or without an ID, are skipped.
//
// It returns the entries that need a new SVID: new ones, and those whose
// SPIFFE ID, X.509 TTL or DNS names changed. An entry whose SPIFFE ID or
// DNS names changed stops serving its old SVID at once; one whose TTL
// changed keeps serving it until the new one is set. Entries that merely
// lack an SVID (a mint failed) are not returned again: the caller retries
// those itself.
func (c *Cache) ApplyEntries(full bool, upserted []Entry, deletedIDs []string) (changed []Entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	wake := make(map[*group]struct{})
	keep := make(map[string]bool, len(upserted))

	for _, e := range upserted {
		if e.ID == "" {
			c.log.Warn("skipping entry without an id", logkey.SPIFFEID, e.SPIFFEID.String())
			continue
		}
		if e.SPIFFEID.TrustDomain() != c.td {
			c.log.Warn("skipping entry of another trust domain", logkey.EntryID, e.ID, logkey.SPIFFEID, e.SPIFFEID.String())
			continue
		}
		e = canonical(e)
		keep[e.ID] = true
		rec, ok := c.records[e.ID]
		if !ok {
			rec = &record{entry: e}
			c.records[e.ID] = rec
			c.indexRecord(rec)
			c.attachRecord(rec)
			changed = append(changed, cloneEntry(e))
			c.log.Debug("entry added", logkey.EntryID, e.ID, logkey.SPIFFEID, e.SPIFFEID.String())
			continue
		}
		old := rec.entry
		if sameEntry(old, e) {
			rec.entry.Revision = e.Revision
			invalidate(rec.groups)
			continue
		}
		wasIdentity := usable(rec.svid, now)
		if old.SPIFFEID != e.SPIFFEID || !slices.Equal(old.DNSNames, e.DNSNames) {
			// The SVID names the old identity; stop serving it.
			rec.svid = nil
		}
		if !slices.Equal(old.Selectors, e.Selectors) {
			c.detachRecord(rec, wasIdentity, wake)
			c.unindexRecord(rec)
			rec.entry = e
			c.indexRecord(rec)
			c.attachRecord(rec)
			if usable(rec.svid, now) {
				addAll(wake, rec.groups)
			}
		} else {
			rec.entry = e
			invalidate(rec.groups)
			if wasIdentity {
				addAll(wake, rec.groups)
			}
		}
		if old.SPIFFEID != e.SPIFFEID || old.X509TTL != e.X509TTL || !slices.Equal(old.DNSNames, e.DNSNames) {
			changed = append(changed, cloneEntry(e))
		}
		c.log.Debug("entry changed", logkey.EntryID, e.ID, logkey.SPIFFEID, e.SPIFFEID.String())
	}

	remove := func(id string) {
		rec, ok := c.records[id]
		if !ok {
			return
		}
		c.detachRecord(rec, usable(rec.svid, now), wake)
		c.unindexRecord(rec)
		delete(c.records, id)
		c.log.Debug("entry removed", logkey.EntryID, id)
	}
	for _, id := range deletedIDs {
		remove(id)
	}
	if full {
		for id := range c.records {
			if !keep[id] {
				remove(id)
			}
		}
	}
	c.notify(wake)
	return changed
}

// Entries returns every entry, ordered by ID.
func (c *Cache) Entries() []Entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Sorted as pointers: a sort of []Entry would instantiate its own
	// copy of the generic sort for Entry's shape, about 14 KB of binary
	// that every agent maps (issue 19).
	recs := make([]*record, 0, len(c.records))
	for _, rec := range c.records {
		recs = append(recs, rec)
	}
	slices.SortFunc(recs, func(a, b *record) int { return cmp.Compare(a.entry.ID, b.entry.ID) })
	out := make([]Entry, len(recs))
	for i, rec := range recs {
		out[i] = cloneEntry(rec.entry)
	}
	return out
}

// SetSVID makes svid the current SVID of entry entryID and pushes it to the
// subscribers that match the entry. The cache keeps it in its own compact
// form (see SVID), not svid itself. It fails with ErrInvalidSVID when svid
// has no certificate or a key that cannot be encoded, with
// ErrUnknownEntry when the entry is gone, and with ErrSVIDMismatch when
// the SVID's SPIFFE ID or DNS names are no longer the entry's (it was
// minted for an older version).
func (c *Cache) SetSVID(entryID string, svid *x509svid.SVID) error {
	return c.SetSVIDs([]EntrySVID{{EntryID: entryID, SVID: svid}})[0]
}

// EntrySVID is an SVID for an entry, as SetSVIDs takes them.
type EntrySVID struct {
	EntryID string
	SVID    *x509svid.SVID
}

// SetSVIDs is SetSVID for a batch, such as the SVIDs of one mint call: each
// affected subscriber is told once, with all of them, instead of once per
// SVID. It returns SetSVID's error for each, nil for those stored.
func (c *Cache) SetSVIDs(svids []EntrySVID) []error {
	errs := make([]error, len(svids))
	// Encode outside the lock: a burst of thousands of SVIDs must not hold
	// up the streams.
	compact := make([]*SVID, len(svids))
	for i, s := range svids {
		compact[i], errs[i] = NewSVID(s.SVID)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	wake := make(map[*group]struct{})
	for i, s := range svids {
		if errs[i] != nil {
			continue
		}
		svid := compact[i]
		rec, ok := c.records[s.EntryID]
		if !ok {
			errs[i] = wrapErr(ErrUnknownEntry)
			continue
		}
		if svid.id != rec.entry.SPIFFEID || !sameDNSNames(s.SVID.Certificates[0].DNSNames, rec.entry.DNSNames) {
			errs[i] = wrapErr(ErrSVIDMismatch)
			continue
		}
		// The entry's copy of the ID, so that the two share one string.
		svid.id = rec.entry.SPIFFEID
		wasIdentity := usable(rec.svid, now)
		rec.svid = svid
		if wasIdentity || usable(svid, now) {
			addAll(wake, rec.groups)
		}
	}
	c.notify(wake)
	return errs
}

// HasEntry reports whether the cache holds the entry entryID.
func (c *Cache) HasEntry(entryID string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.records[entryID]
	return ok
}

// SVID returns the SVID held for entryID, expired or not, or nil.
func (c *Cache) SVID(entryID string) *SVID {
	c.mu.Lock()
	defer c.mu.Unlock()
	if rec, ok := c.records[entryID]; ok {
		return rec.svid
	}
	return nil
}

// SetBundle sets the trust domain's X.509 and JWT bundles (a nil JWT bundle
// means no JWT authorities) and their revision. Subscribers are woken only
// when the contents changed. The cache keeps copies.
func (c *Cache) SetBundle(x *x509bundle.Bundle, j *jwtbundle.Bundle, revision int64) error {
	if x == nil {
		return wrapErr(ErrNoBundle)
	}
	if j == nil {
		j = jwtbundle.New(c.td)
	}
	if x.TrustDomain() != c.td || j.TrustDomain() != c.td {
		return wrapErr(ErrTrustDomainMismatch)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bundleRev = revision
	if x.Equal(c.bundle) && j.Equal(c.jwtBundle) {
		return nil
	}
	c.bundle, c.jwtBundle = x.Clone(), j.Clone()
	c.notifyAll()
	return nil
}

// BundleRevision returns the revision given with the bundle last set (0
// before any): what the agent reports serving, without building an
// Update.
func (c *Cache) BundleRevision() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bundleRev
}

// SetFederatedBundles replaces the bundles of foreign trust domains that
// workloads should trust. Subscribers are woken only when they changed.
func (c *Cache) SetFederatedBundles(x []*x509bundle.Bundle, j []*jwtbundle.Bundle) error {
	xs := make([]*x509bundle.Bundle, 0, len(x))
	for _, b := range x {
		if b.TrustDomain() == c.td {
			return wrapErr(ErrTrustDomainMismatch)
		}
		xs = append(xs, b.Clone())
	}
	js := make([]*jwtbundle.Bundle, 0, len(j))
	for _, b := range j {
		if b.TrustDomain() == c.td {
			return wrapErr(ErrTrustDomainMismatch)
		}
		js = append(js, b.Clone())
	}
	slices.SortFunc(xs, func(a, b *x509bundle.Bundle) int { return cmp.Compare(a.TrustDomain().Name(), b.TrustDomain().Name()) })
	slices.SortFunc(js, func(a, b *jwtbundle.Bundle) int { return cmp.Compare(a.TrustDomain().Name(), b.TrustDomain().Name()) })

	c.mu.Lock()
	defer c.mu.Unlock()
	if slices.EqualFunc(xs, c.fedBundles, (*x509bundle.Bundle).Equal) && slices.EqualFunc(js, c.fedJWT, (*jwtbundle.Bundle).Equal) {
		return nil
	}
	c.fedBundles, c.fedJWT = xs, js
	c.notifyAll()
	return nil
}

// Ready reports whether the bundle has been set: until then the agent has
// nothing trustworthy to serve.
func (c *Cache) Ready() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bundle != nil
}

// Stats reports how many SVIDs the cache holds and the earliest NotAfter
// among them (zero when there are none). An earliest expiry in the past
// means an SVID expired without being renewed.
func (c *Cache) Stats() (svids int, earliestExpiry time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rec := range c.records {
		if rec.svid == nil {
			continue
		}
		svids++
		if na := rec.svid.NotAfter(); earliestExpiry.IsZero() || na.Before(earliestExpiry) {
			earliestExpiry = na
		}
	}
	return svids, earliestExpiry
}

// PruneExpired drops every SVID that has expired by the cache's clock and
// pushes the new state to the subscribers that held one, so that streams
// withdraw it. It returns how many it dropped. Expired SVIDs are never
// served either way; pruning is what tells open streams.
func (c *Cache) PruneExpired() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	wake := make(map[*group]struct{})
	n := 0
	for _, rec := range c.records {
		if rec.svid != nil && !usable(rec.svid, now) {
			rec.svid = nil
			addAll(wake, rec.groups)
			n++
		}
	}
	c.notify(wake)
	return n
}

// Lookup returns the current state for a workload with selectors, without
// subscribing: for one-shot calls such as FetchJWTSVID. With no selectors
// it matches no entry and returns just the bundles.
func (c *Cache) Lookup(selectors []string) *Update {
	sels := normalize(selectors)
	c.mu.Lock()
	defer c.mu.Unlock()
	if g, ok := c.groups[key(sels)]; ok {
		return c.current(g)
	}
	return c.build(c.match(sels))
}

// Subscribe returns a subscription to the state of a workload with
// selectors. See the package documentation for when Updates are delivered.
// Close it when done.
func (c *Cache) Subscribe(selectors []string) *Subscription {
	return c.subscribe(selectors, false)
}

// SubscribeBundles is Subscribe for consumers that serve only bundles
// (FetchX509Bundles, FetchJWTBundles): the first Update is delivered as
// soon as the bundle is set, without waiting for the workload's first SVID,
// and so are later bundle changes.
func (c *Cache) SubscribeBundles(selectors []string) *Subscription {
	return c.subscribe(selectors, true)
}

// SubscribeFunc is Subscribe for consumers that convert Updates into
// their own form (the SDS adapter): instead of a channel send, deliver is
// called with each Update the subscriber should see, under the same rules.
// It is called with the cache locked, so it must be quick, must not block,
// and must not call the cache. Saving the channel hop saves a goroutine per
// subscriber. Close the returned Subscription to stop; its Updates channel
// is not used.
func (c *Cache) SubscribeFunc(selectors []string, deliver func(*Update)) *Subscription {
	return c.subscribeWith(selectors, false, deliver)
}

func (c *Cache) subscribe(selectors []string, bundlesOnly bool) *Subscription {
	return c.subscribeWith(selectors, bundlesOnly, nil)
}

func (c *Cache) subscribeWith(selectors []string, bundlesOnly bool, deliver func(*Update)) *Subscription {
	sels := normalize(selectors)
	k := key(sels)
	c.mu.Lock()
	defer c.mu.Unlock()
	g, ok := c.groups[k]
	if !ok {
		g = &group{key: k, selectors: sels, matched: c.match(sels), subs: make(map[*Subscription]struct{})}
		c.groups[k] = g
		for _, s := range sels {
			addTo(c.groupsBySelector, s, g)
		}
		for _, rec := range g.matched {
			rec.groups = rec.groups.with(g)
		}
	}
	sub := &Subscription{c: c, g: g, ch: make(chan *Update, 1), bundlesOnly: bundlesOnly, deliver: deliver}
	g.subs[sub] = struct{}{}
	sub.offer(c.current(g))
	return sub
}

// Subscription delivers a workload's state as it changes.
type Subscription struct {
	c *Cache
	g *group
	// ch has room for one Update; offer replaces an unread one.
	ch          chan *Update
	bundlesOnly bool
	deliver     func(*Update) // replaces ch when set (SubscribeFunc)
	// sent and closed are guarded by c.mu.
	sent   bool
	closed bool
}

// Updates returns the channel of Updates. It is closed by Close.
func (s *Subscription) Updates() <-chan *Update { return s.ch }

// Close ends the subscription and closes the Updates channel. It is
// idempotent.
func (s *Subscription) Close() {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	delete(s.g.subs, s)
	if len(s.g.subs) == 0 {
		c.removeGroup(s.g)
	}
	close(s.ch)
}

// offer hands u to the subscriber, replacing an Update it has not read yet.
// Before the first delivery it holds back Updates that have nothing to
// serve: no bundle, or (unless bundlesOnly) no usable SVID. Called with
// c.mu held, which makes the cache the only sender.
func (s *Subscription) offer(u *Update) {
	if !s.sent && len(u.Entries) > 0 && (u.Bundle == nil || (!s.bundlesOnly && len(u.Identities) == 0)) {
		return
	}
	s.sent = true
	if s.deliver != nil {
		s.deliver(u)
		return
	}
	select {
	case s.ch <- u:
		return
	default:
	}
	// Full: take back the stale Update (unless the reader just did) and
	// put the new one in its place. Only we send, so this cannot block.
	select {
	case <-s.ch:
	default:
	}
	s.ch <- u
}

// notify pushes fresh state to every subscriber of the given groups.
func (c *Cache) notify(groups map[*group]struct{}) {
	for g := range groups {
		c.notifyGroup(g)
	}
}

func (c *Cache) notifyAll() {
	for _, g := range c.groups {
		c.notifyGroup(g)
	}
}

func (c *Cache) notifyGroup(g *group) {
	u := c.build(g.matched)
	g.last = u
	for sub := range g.subs {
		sub.offer(u)
	}
}

// current returns the group's state for a new subscriber: the Update its
// other subscribers hold, unless an SVID in it has expired since it was
// built (expiry alone notifies no one), in which case a fresh one. Every
// other change to what build would return either goes through notify,
// which replaces g.last, or invalidates it (attachRecord, detachRecord,
// invalidate).
func (c *Cache) current(g *group) *Update {
	now := c.clock.Now()
	if u := g.last; u != nil && !slices.ContainsFunc(u.Identities, func(id Identity) bool { return !usable(id.SVID, now) }) {
		return u
	}
	g.last = c.build(g.matched)
	return g.last
}

// build makes the Update for a set of matched entries.
func (c *Cache) build(matched map[string]*record) *Update {
	now := c.clock.Now()
	recs := make([]*record, 0, len(matched))
	for _, rec := range matched {
		recs = append(recs, rec)
	}
	slices.SortFunc(recs, func(a, b *record) int { return cmp.Compare(a.entry.ID, b.entry.ID) })
	u := &Update{
		Entries:        make([]Entry, 0, len(recs)),
		Bundle:         c.bundle,
		JWTBundle:      c.jwtBundle,
		BundleRevision: c.bundleRev,
	}
	federates := map[string]bool{}
	for _, rec := range recs {
		u.Entries = append(u.Entries, rec.entry)
		if usable(rec.svid, now) {
			u.Identities = append(u.Identities, Identity{Entry: rec.entry, SVID: rec.svid})
		}
		for _, td := range rec.entry.FederatesWith {
			federates[td] = true
		}
	}
	// A workload gets only the foreign roots its entries federate with.
	for _, b := range c.fedBundles {
		if federates[b.TrustDomain().Name()] {
			u.FederatedBundles = append(u.FederatedBundles, b)
		}
	}
	for _, b := range c.fedJWT {
		if federates[b.TrustDomain().Name()] {
			u.FederatedJWTBundles = append(u.FederatedJWTBundles, b)
		}
	}
	return u
}

// match returns the entries a workload with sels (normalized) is entitled
// to, looking only at entries that share one of its selectors.
func (c *Cache) match(sels []string) map[string]*record {
	out := make(map[string]*record)
	for _, s := range sels {
		for rec := range c.recordsBySelector[s].all() {
			if _, done := out[rec.entry.ID]; !done && attestor.Match(rec.entry.Selectors, sels) {
				out[rec.entry.ID] = rec
			}
		}
	}
	return out
}

// attachRecord links rec with every group its selectors match. Candidates
// are the groups sharing rec's least common selector.
func (c *Cache) attachRecord(rec *record) {
	var candidates set[*group]
	for i, s := range rec.entry.Selectors {
		gs := c.groupsBySelector[s]
		if i == 0 || gs.len() < candidates.len() {
			candidates = gs
		}
	}
	for g := range candidates.all() {
		if attestor.Match(rec.entry.Selectors, g.selectors) {
			g.matched[rec.entry.ID] = rec
			rec.groups = rec.groups.with(g)
			g.last = nil
		}
	}
}

// invalidate drops the shared Update of groups whose state changed
// without waking them (an entry without an SVID came or changed): their
// next subscriber must get a fresh one.
func invalidate(groups set[*group]) {
	for g := range groups.all() {
		g.last = nil
	}
}

// detachRecord unlinks rec from its groups, marking for waking those that
// lose an identity (wasIdentity) or their last entry.
func (c *Cache) detachRecord(rec *record, wasIdentity bool, wake map[*group]struct{}) {
	for g := range rec.groups.all() {
		delete(g.matched, rec.entry.ID)
		g.last = nil
		if wasIdentity || len(g.matched) == 0 {
			wake[g] = struct{}{}
		}
	}
	rec.groups = set[*group]{}
}

func (c *Cache) indexRecord(rec *record) {
	for _, s := range rec.entry.Selectors {
		addTo(c.recordsBySelector, s, rec)
	}
}

func (c *Cache) unindexRecord(rec *record) {
	for _, s := range rec.entry.Selectors {
		removeFrom(c.recordsBySelector, s, rec)
	}
}

func (c *Cache) removeGroup(g *group) {
	delete(c.groups, g.key)
	for _, s := range g.selectors {
		removeFrom(c.groupsBySelector, s, g)
	}
	for _, rec := range g.matched {
		rec.groups = rec.groups.without(g)
	}
}

// usable reports whether svid can be served at now.
func usable(svid *SVID, now time.Time) bool {
	return svid != nil && !rotate.Expired(now, svid.NotAfter())
}

// canonical returns a copy of e with sorted, de-duplicated selectors and DNS
// names, so that entries compare by content and the cache owns its slices.
func canonical(e Entry) Entry {
	e.Selectors = normalize(e.Selectors)
	e.DNSNames = slices.Compact(slices.Sorted(slices.Values(e.DNSNames)))
	e.FederatesWith = slices.Compact(slices.Sorted(slices.Values(e.FederatesWith)))
	return e
}

// sameEntry reports whether a and b differ in nothing but Revision.
func sameEntry(a, b Entry) bool {
	a.Revision = b.Revision
	return a.ID == b.ID && a.SPIFFEID == b.SPIFFEID && a.X509TTL == b.X509TTL && a.JWTTTL == b.JWTTTL &&
		a.Hint == b.Hint && slices.Equal(a.Selectors, b.Selectors) && slices.Equal(a.DNSNames, b.DNSNames) &&
		slices.Equal(a.FederatesWith, b.FederatesWith)
}

// sameDNSNames compares a certificate's DNS names with an entry's (sorted)
// as sets, ignoring case as DNS does.
func sameDNSNames(cert, entry []string) bool {
	lower := func(s []string) []string {
		out := make([]string, len(s))
		for i, v := range s {
			out[i] = strings.ToLower(v)
		}
		return slices.Compact(slices.Sorted(slices.Values(out)))
	}
	return slices.Equal(lower(cert), lower(entry))
}

func cloneEntry(e Entry) Entry {
	e.Selectors = slices.Clone(e.Selectors)
	e.DNSNames = slices.Clone(e.DNSNames)
	e.FederatesWith = slices.Clone(e.FederatesWith)
	return e
}

// normalize sorts and de-duplicates selectors into a new slice.
func normalize(sels []string) []string {
	return slices.Compact(slices.Sorted(slices.Values(sels)))
}

// key names a normalized selector set. Selectors cannot contain NUL.
func key(sels []string) string { return strings.Join(sels, "\x00") }

func addTo[T comparable](idx map[string]set[T], s string, v T) {
	idx[s] = idx[s].with(v)
}

func removeFrom[T comparable](idx map[string]set[T], s string, v T) {
	if st, ok := idx[s]; ok {
		if st = st.without(v); st.len() == 0 {
			delete(idx, s)
		} else {
			idx[s] = st
		}
	}
}

func addAll(dst map[*group]struct{}, src set[*group]) {
	for g := range src.all() {
		dst[g] = struct{}{}
	}
}

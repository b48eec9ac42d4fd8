package cache_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/signet-mesh/signet/agent/cache"
	"github.com/signet-mesh/signet/internal/clock"
)

var (
	td    = spiffeid.RequireTrustDomainFromString("example.org")
	start = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
)

func newCache(t testing.TB) (*cache.Cache, *clock.Fake) {
	t.Helper()
	clk := clock.NewFake(start)
	return cache.New(cache.Config{TrustDomain: td, Clock: clk}), clk
}

func entry(id, path string, selectors ...string) cache.Entry {
	return cache.Entry{
		ID:        id,
		SPIFFEID:  spiffeid.RequireFromPath(td, path),
		Selectors: selectors,
		X509TTL:   time.Hour,
	}
}

// key stands in for every SVID's private key.
var key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

// svid fakes an SVID: the cache only looks at the ID and the leaf's
// NotAfter and DNS names, and keeps its Raw as the leaf's DER, so no real
// certificate is needed. The fake DER names the serial (see serialOf).
func svid(id spiffeid.ID, serial int64, notAfter time.Time, dnsNames ...string) *x509svid.SVID {
	return &x509svid.SVID{
		ID:         id,
		PrivateKey: key,
		Certificates: []*x509.Certificate{{
			Raw:          []byte(fmt.Sprintf("leaf#%d", serial)),
			SerialNumber: big.NewInt(serial),
			NotBefore:    notAfter.Add(-time.Hour),
			NotAfter:     notAfter,
			DNSNames:     dnsNames,
		}},
	}
}

// serialOf returns the serial of an SVID made by svid.
func serialOf(s *cache.SVID) int64 {
	var n int64
	if _, err := fmt.Sscanf(string(s.LeafDER()), "leaf#%d", &n); err != nil {
		panic(fmt.Sprintf("not a fake leaf: %q", s.LeafDER()))
	}
	return n
}

func bundle(raw ...byte) *x509bundle.Bundle {
	var certs []*x509.Certificate
	for _, r := range raw {
		certs = append(certs, &x509.Certificate{Raw: []byte{r}})
	}
	return x509bundle.FromX509Authorities(td, certs)
}

func mustSetSVID(t *testing.T, c *cache.Cache, e cache.Entry, serial int64, notAfter time.Time) {
	t.Helper()
	if err := c.SetSVID(e.ID, svid(e.SPIFFEID, serial, notAfter, e.DNSNames...)); err != nil {
		t.Fatalf("SetSVID(%s): %v", e.ID, err)
	}
}

// summary is the part of an Update the tests compare.
type summary struct {
	Entries    []string
	Identities []string // "entry-id#serial"
	Bundle     int      // number of X.509 authorities, -1 for none
	Revision   int64
}

func summarize(u *cache.Update) summary {
	s := summary{Bundle: -1, Revision: u.BundleRevision}
	for _, e := range u.Entries {
		s.Entries = append(s.Entries, e.ID)
	}
	for _, id := range u.Identities {
		s.Identities = append(s.Identities, fmt.Sprintf("%s#%d", id.Entry.ID, serialOf(id.SVID)))
	}
	if u.Bundle != nil {
		s.Bundle = len(u.Bundle.X509Authorities())
	}
	return s
}

// next returns the pending Update. Every cache method delivers before it
// returns, so there is nothing to wait for.
func next(t *testing.T, sub *cache.Subscription) summary {
	t.Helper()
	select {
	case u := <-sub.Updates():
		return summarize(u)
	default:
		t.Fatal("no update pending")
		return summary{}
	}
}

func none(t *testing.T, name string, sub *cache.Subscription) {
	t.Helper()
	select {
	case u := <-sub.Updates():
		t.Errorf("%s: unexpected update %+v", name, summarize(u))
	default:
	}
}

func TestSubscribeInitialState(t *testing.T) {
	later := start.Add(time.Hour)
	web := entry("e1", "/web", "unix:uid:1000")
	db := entry("e2", "/db", "unix:uid:1000", "unix:path:/bin/db")
	tests := []struct {
		name      string
		setBundle bool
		svids     []cache.Entry
		selectors []string
		want      *summary // nil: no first update yet
	}{
		{
			name: "svids and bundle", setBundle: true, svids: []cache.Entry{web, db},
			selectors: []string{"unix:uid:1000", "unix:path:/bin/db", "unix:gid:5"},
			want:      &summary{Entries: []string{"e1", "e2"}, Identities: []string{"e1#1", "e2#2"}, Bundle: 1, Revision: 7},
		},
		{
			name: "only the entries the selectors match", setBundle: true, svids: []cache.Entry{web, db},
			selectors: []string{"unix:uid:1000"},
			want:      &summary{Entries: []string{"e1"}, Identities: []string{"e1#1"}, Bundle: 1, Revision: 7},
		},
		{
			name: "one svid is enough", setBundle: true, svids: []cache.Entry{db},
			selectors: []string{"unix:uid:1000", "unix:path:/bin/db"},
			want:      &summary{Entries: []string{"e1", "e2"}, Identities: []string{"e2#2"}, Bundle: 1, Revision: 7},
		},
		{
			name: "no svid yet", setBundle: true,
			selectors: []string{"unix:uid:1000"},
		},
		{
			name: "no bundle yet", svids: []cache.Entry{web},
			selectors: []string{"unix:uid:1000"},
		},
		{
			name: "no matching entry is told at once", svids: []cache.Entry{web},
			selectors: []string{"unix:uid:0"},
			want:      &summary{Bundle: -1},
		},
		{
			name: "selectors are a set", setBundle: true, svids: []cache.Entry{web},
			selectors: []string{"unix:uid:1000", "unix:uid:1000"},
			want:      &summary{Entries: []string{"e1"}, Identities: []string{"e1#1"}, Bundle: 1, Revision: 7},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newCache(t)
			c.ApplyEntries(true, []cache.Entry{web, db}, nil)
			for _, e := range tt.svids {
				serial := int64(1)
				if e.ID == "e2" {
					serial = 2
				}
				mustSetSVID(t, c, e, serial, later)
			}
			if tt.setBundle {
				if err := c.SetBundle(bundle(1), nil, 7); err != nil {
					t.Fatal(err)
				}
			}
			sub := c.Subscribe(tt.selectors)
			defer sub.Close()
			if tt.want == nil {
				none(t, "before the workload has anything to serve", sub)
				return
			}
			if diff := cmp.Diff(*tt.want, next(t, sub)); diff != "" {
				t.Errorf("first update (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(*tt.want, summarize(c.Lookup(tt.selectors))); diff != "" {
				t.Errorf("Lookup (-want +got):\n%s", diff)
			}
		})
	}
}

// TestFirstUpdateWhenReady: a subscriber that had nothing to serve gets its
// first update once it has an SVID and the bundle is set.
func TestFirstUpdateWhenReady(t *testing.T) {
	c, _ := newCache(t)
	web := entry("e1", "/web", "unix:uid:1000")
	c.ApplyEntries(true, []cache.Entry{web}, nil)
	sub := c.Subscribe([]string{"unix:uid:1000"})
	defer sub.Close()
	none(t, "no svid, no bundle", sub)
	mustSetSVID(t, c, web, 1, start.Add(time.Hour))
	none(t, "no bundle", sub)
	if err := c.SetBundle(bundle(1), nil, 1); err != nil {
		t.Fatal(err)
	}
	want := summary{Entries: []string{"e1"}, Identities: []string{"e1#1"}, Bundle: 1, Revision: 1}
	if diff := cmp.Diff(want, next(t, sub)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestSubscribeBundles: a bundle-only subscriber is served as soon as the
// bundle is set, and on every bundle change, with or without an SVID.
func TestSubscribeBundles(t *testing.T) {
	c, _ := newCache(t)
	web := entry("e1", "/web", "unix:uid:1000")
	c.ApplyEntries(true, []cache.Entry{web}, nil)
	sub := c.SubscribeBundles([]string{"unix:uid:1000"})
	defer sub.Close()
	none(t, "no bundle", sub)
	if err := c.SetBundle(bundle(1), nil, 1); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(summary{Entries: []string{"e1"}, Bundle: 1, Revision: 1}, next(t, sub)); diff != "" {
		t.Errorf("first update (-want +got):\n%s", diff)
	}
	if err := c.SetBundle(bundle(1, 2), nil, 2); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(summary{Entries: []string{"e1"}, Bundle: 2, Revision: 2}, next(t, sub)); diff != "" {
		t.Errorf("bundle change (-want +got):\n%s", diff)
	}
	other := c.SubscribeBundles([]string{"unix:uid:0"})
	defer other.Close()
	if got := next(t, other); len(got.Entries) != 0 {
		t.Errorf("unentitled bundle subscriber: %+v, want no entries", got)
	}
}

func TestSetSVIDWakesOnlyMatching(t *testing.T) {
	c, _ := newCache(t)
	later := start.Add(time.Hour)
	x := entry("x", "/x", "unix:uid:1")
	y := entry("y", "/y", "unix:uid:2")
	c.ApplyEntries(true, []cache.Entry{x, y}, nil)
	mustSetSVID(t, c, x, 1, later)
	mustSetSVID(t, c, y, 1, later)
	if err := c.SetBundle(bundle(1), nil, 1); err != nil {
		t.Fatal(err)
	}
	subs := map[string]*cache.Subscription{
		"uid1":      c.Subscribe([]string{"unix:uid:1"}),
		"uid1+path": c.Subscribe([]string{"unix:uid:1", "unix:path:/a"}),
		"uid2":      c.Subscribe([]string{"unix:uid:2"}),
		"uid3":      c.Subscribe([]string{"unix:uid:3"}),
	}
	for _, s := range subs {
		defer s.Close()
		<-s.Updates() // initial state
	}

	mustSetSVID(t, c, x, 2, later)

	for _, name := range []string{"uid1", "uid1+path"} {
		want := summary{Entries: []string{"x"}, Identities: []string{"x#2"}, Bundle: 1, Revision: 1}
		if diff := cmp.Diff(want, next(t, subs[name])); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
	none(t, "uid2", subs["uid2"])
	none(t, "uid3", subs["uid3"])
}

func TestLatestWins(t *testing.T) {
	c, _ := newCache(t)
	e := entry("e", "/e", "unix:uid:1")
	c.ApplyEntries(true, []cache.Entry{e}, nil)
	if err := c.SetBundle(bundle(1), nil, 1); err != nil {
		t.Fatal(err)
	}
	sub := c.Subscribe([]string{"unix:uid:1"})
	defer sub.Close()
	// A reader that never reads must not hold the cache up.
	for serial := int64(1); serial <= 100; serial++ {
		mustSetSVID(t, c, e, serial, start.Add(time.Hour))
	}
	want := summary{Entries: []string{"e"}, Identities: []string{"e#100"}, Bundle: 1, Revision: 1}
	if diff := cmp.Diff(want, next(t, sub)); diff != "" {
		t.Errorf("after 100 unread updates (-want +got):\n%s", diff)
	}
	none(t, "after reading the latest", sub)
}

// TestSubscribersShareUpdates: proxies that open streams one after another
// share one Update (and so one encoding of it) until the state changes.
func TestSubscribersShareUpdates(t *testing.T) {
	c, clk := newCache(t)
	e := entry("e", "/e", "unix:uid:1")
	c.ApplyEntries(true, []cache.Entry{e}, nil)
	mustSetSVID(t, c, e, 1, start.Add(time.Hour))
	if err := c.SetBundle(bundle(1), nil, 1); err != nil {
		t.Fatal(err)
	}
	first := c.Subscribe([]string{"unix:uid:1"})
	defer first.Close()
	u1 := <-first.Updates()
	second := c.Subscribe([]string{"unix:uid:1"})
	defer second.Close()
	if u := <-second.Updates(); u != u1 {
		t.Error("a second subscriber with no change in between got a new Update")
	}

	mustSetSVID(t, c, e, 2, start.Add(2*time.Hour))
	u2 := <-first.Updates()
	if u := <-second.Updates(); u != u2 {
		t.Error("subscribers got different Updates for one change")
	}
	third := c.Subscribe([]string{"unix:uid:1"})
	defer third.Close()
	if u := <-third.Updates(); u != u2 {
		t.Error("a subscriber after a change did not get the current Update")
	}

	// An entry without an SVID yet wakes no one, but a new subscriber
	// must see it among the entries.
	c.ApplyEntries(false, []cache.Entry{entry("pending", "/pending", "unix:uid:1")}, nil)
	if got := ids(c.Lookup([]string{"unix:uid:1"}).Entries); !slices.Equal(got, []string{"e", "pending"}) {
		t.Errorf("entries after adding one without an SVID: %v, want [e pending]", got)
	}

	// Expiry notifies no one, but a new subscriber must not get the
	// expired SVID from the shared Update.
	clk.Advance(3 * time.Hour)
	if u := c.Lookup([]string{"unix:uid:1"}); u == u2 || len(u.Identities) != 0 {
		t.Errorf("Lookup after the shared Update's SVID expired: same Update %v, %d identities", u == u2, len(u.Identities))
	}
}

// TestSetSVIDsOneUpdate: a batch of SVIDs reaches a subscriber entitled
// to all of them as one update; a refused SVID does not stop the others.
func TestSetSVIDsOneUpdate(t *testing.T) {
	c, _ := newCache(t)
	var entries []cache.Entry
	for _, id := range []string{"a", "b", "c"} {
		entries = append(entries, entry(id, "/"+id, "unix:uid:1"))
	}
	c.ApplyEntries(true, entries, nil)
	if err := c.SetBundle(bundle(1), nil, 1); err != nil {
		t.Fatal(err)
	}
	mustSetSVID(t, c, entries[0], 1, start.Add(time.Hour))
	sub := c.Subscribe([]string{"unix:uid:1"})
	defer sub.Close()
	<-sub.Updates()

	var deliveries []*cache.Update // SubscribeFunc sees every offer, unlike a channel
	counted := c.SubscribeFunc([]string{"unix:uid:1"}, func(u *cache.Update) { deliveries = append(deliveries, u) })
	defer counted.Close()
	deliveries = nil

	errs := c.SetSVIDs([]cache.EntrySVID{
		{EntryID: "b", SVID: svid(entries[1].SPIFFEID, 2, start.Add(time.Hour))},
		{EntryID: "gone", SVID: svid(entries[1].SPIFFEID, 3, start.Add(time.Hour))},
		{EntryID: "c", SVID: svid(entries[2].SPIFFEID, 4, start.Add(time.Hour))},
	})
	if errs[0] != nil || !errors.Is(errs[1], cache.ErrUnknownEntry) || errs[2] != nil {
		t.Errorf("SetSVIDs errors = %v, want nil, ErrUnknownEntry, nil", errs)
	}
	want := summary{Entries: []string{"a", "b", "c"}, Identities: []string{"a#1", "b#2", "c#4"}, Bundle: 1, Revision: 1}
	if diff := cmp.Diff(want, next(t, sub)); diff != "" {
		t.Errorf("update after the batch (-want +got):\n%s", diff)
	}
	none(t, "after the batch's one update", sub)
	if len(deliveries) != 1 {
		t.Errorf("the batch was delivered as %d updates, want 1", len(deliveries))
	}
}

func TestDeleteEntry(t *testing.T) {
	c, _ := newCache(t)
	later := start.Add(time.Hour)
	a := entry("a", "/a", "unix:uid:1")
	b := entry("b", "/b", "unix:uid:1")
	c.ApplyEntries(true, []cache.Entry{a, b}, nil)
	mustSetSVID(t, c, a, 1, later)
	mustSetSVID(t, c, b, 2, later)
	if err := c.SetBundle(bundle(1), nil, 1); err != nil {
		t.Fatal(err)
	}
	sub := c.Subscribe([]string{"unix:uid:1"})
	defer sub.Close()
	<-sub.Updates()

	c.ApplyEntries(false, nil, []string{"a"})
	want := summary{Entries: []string{"b"}, Identities: []string{"b#2"}, Bundle: 1, Revision: 1}
	if diff := cmp.Diff(want, next(t, sub)); diff != "" {
		t.Errorf("after deleting a (-want +got):\n%s", diff)
	}
	if c.SVID("a") != nil {
		t.Error("SVID of a deleted entry is still held")
	}
	if err := c.SetSVID("a", svid(a.SPIFFEID, 3, later)); !errors.Is(err, cache.ErrUnknownEntry) {
		t.Errorf("SetSVID for a deleted entry: err = %v, want ErrUnknownEntry", err)
	}
	none(t, "after SetSVID of a deleted entry", sub)

	// A full sync without b takes the workload's last entry: it is told.
	c.ApplyEntries(true, []cache.Entry{entry("c", "/c", "unix:uid:2")}, nil)
	want = summary{Entries: nil, Bundle: 1, Revision: 1}
	if diff := cmp.Diff(want, next(t, sub)); diff != "" {
		t.Errorf("after the full sync (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"c"}, ids(c.Entries())); diff != "" {
		t.Errorf("Entries() after full sync (-want +got):\n%s", diff)
	}
}

// TestLastEntryWithoutSVIDDeleted: losing an entry that had no SVID yet is
// not an identity change, unless it was the workload's last entry.
func TestLastEntryWithoutSVIDDeleted(t *testing.T) {
	c, _ := newCache(t)
	a := entry("a", "/a", "unix:uid:1")
	b := entry("b", "/b", "unix:uid:1")
	c.ApplyEntries(true, []cache.Entry{a, b}, nil)
	mustSetSVID(t, c, a, 1, start.Add(time.Hour))
	if err := c.SetBundle(bundle(1), nil, 1); err != nil {
		t.Fatal(err)
	}
	sub := c.Subscribe([]string{"unix:uid:1"})
	defer sub.Close()
	<-sub.Updates()

	c.ApplyEntries(false, nil, []string{"b"})
	none(t, "deleting b, which had no SVID", sub)
	c.ApplyEntries(false, nil, []string{"a"})
	if got := next(t, sub); len(got.Entries) != 0 || len(got.Identities) != 0 {
		t.Errorf("after deleting the last entry: %+v, want no entries", got)
	}
}

func TestExpiredSVIDsAreNotServed(t *testing.T) {
	c, clk := newCache(t)
	short := entry("short", "/short", "unix:uid:1")
	long := entry("long", "/long", "unix:uid:1")
	c.ApplyEntries(true, []cache.Entry{short, long}, nil)
	mustSetSVID(t, c, short, 1, start.Add(time.Minute))
	mustSetSVID(t, c, long, 2, start.Add(time.Hour))
	if err := c.SetBundle(bundle(1), nil, 1); err != nil {
		t.Fatal(err)
	}
	sub := c.Subscribe([]string{"unix:uid:1"})
	defer sub.Close()
	want := summary{Entries: []string{"long", "short"}, Identities: []string{"long#2", "short#1"}, Bundle: 1, Revision: 1}
	if diff := cmp.Diff(want, next(t, sub)); diff != "" {
		t.Errorf("before expiry (-want +got):\n%s", diff)
	}

	clk.Advance(2 * time.Minute)
	want.Identities = []string{"long#2"}
	if diff := cmp.Diff(want, summarize(c.Lookup([]string{"unix:uid:1"}))); diff != "" {
		t.Errorf("Lookup after short expired (-want +got):\n%s", diff)
	}
	// Any update built now leaves the expired SVID out...
	if err := c.SetBundle(bundle(1, 2), nil, 2); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(summary{Entries: want.Entries, Identities: want.Identities, Bundle: 2, Revision: 2}, next(t, sub)); diff != "" {
		t.Errorf("update after short expired (-want +got):\n%s", diff)
	}

	// ...and once everything has expired, a new subscriber gets nothing.
	clk.Advance(time.Hour)
	late := c.Subscribe([]string{"unix:uid:1"})
	defer late.Close()
	none(t, "new subscriber when every SVID has expired", late)

	// PruneExpired tells open streams.
	if n := c.PruneExpired(); n != 2 {
		t.Errorf("PruneExpired() = %d, want 2", n)
	}
	if got := next(t, sub); len(got.Identities) != 0 {
		t.Errorf("after PruneExpired: identities %v, want none", got.Identities)
	}
	if n, _ := c.Stats(); n != 0 {
		t.Errorf("Stats() after pruning: %d SVIDs, want 0", n)
	}
}

func ids(es []cache.Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.ID)
	}
	return out
}

func TestApplyEntries(t *testing.T) {
	base := entry("e", "/e", "unix:uid:1")
	base.DNSNames = []string{"e.example.org"}
	base.Revision = 1
	with := func(f func(*cache.Entry)) cache.Entry {
		e := base
		e.Selectors = slices.Clone(base.Selectors)
		e.DNSNames = slices.Clone(base.DNSNames)
		e.Revision = 2
		f(&e)
		return e
	}
	tests := []struct {
		name        string
		update      cache.Entry
		wantChanged bool // returned for minting
		wantKeep    bool // old SVID still served
		wantWake    bool // uid:1 subscriber woken
	}{
		{name: "revision only", update: with(func(*cache.Entry) {}), wantKeep: true},
		{name: "selector order only", update: with(func(e *cache.Entry) { e.Selectors = []string{"unix:uid:1", "unix:uid:1"} }), wantKeep: true},
		{name: "x509 ttl", update: with(func(e *cache.Entry) { e.X509TTL = 2 * time.Hour }), wantChanged: true, wantKeep: true, wantWake: true},
		{name: "jwt ttl", update: with(func(e *cache.Entry) { e.JWTTTL = time.Minute }), wantKeep: true, wantWake: true},
		{name: "hint", update: with(func(e *cache.Entry) { e.Hint = "internal" }), wantKeep: true, wantWake: true},
		{name: "spiffe id", update: with(func(e *cache.Entry) { e.SPIFFEID = spiffeid.RequireFromPath(td, "/other") }), wantChanged: true, wantWake: true},
		{name: "dns names", update: with(func(e *cache.Entry) { e.DNSNames = []string{"x.example.org"} }), wantChanged: true, wantWake: true},
		{name: "selectors moved away", update: with(func(e *cache.Entry) { e.Selectors = []string{"unix:uid:2"} }), wantKeep: true, wantWake: true},
		{name: "selectors narrowed", update: with(func(e *cache.Entry) { e.Selectors = []string{"unix:uid:1", "unix:gid:1"} }), wantKeep: true, wantWake: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newCache(t)
			if got := ids(c.ApplyEntries(true, []cache.Entry{base}, nil)); !slices.Equal(got, []string{"e"}) {
				t.Fatalf("first ApplyEntries changed = %v, want [e]", got)
			}
			old := svid(base.SPIFFEID, 1, start.Add(time.Hour), base.DNSNames...)
			if err := c.SetSVID("e", old); err != nil {
				t.Fatal(err)
			}
			if err := c.SetBundle(bundle(1), nil, 1); err != nil {
				t.Fatal(err)
			}
			sub := c.Subscribe([]string{"unix:uid:1"})
			defer sub.Close()
			<-sub.Updates()

			changed := c.ApplyEntries(false, []cache.Entry{tt.update}, nil)
			if got := len(changed) == 1; got != tt.wantChanged {
				t.Errorf("changed = %v, want returned: %v", ids(changed), tt.wantChanged)
			}
			if got := c.SVID("e") != nil && serialOf(c.SVID("e")) == 1; got != tt.wantKeep {
				t.Errorf("old SVID kept = %v, want %v", got, tt.wantKeep)
			}
			select {
			case <-sub.Updates():
				if !tt.wantWake {
					t.Error("subscriber woken, want not")
				}
			default:
				if tt.wantWake {
					t.Error("subscriber not woken")
				}
			}
			if got := c.Entries()[0].Revision; got != 2 {
				t.Errorf("stored revision = %d, want 2", got)
			}
		})
	}
}

func TestApplyEntriesSkipsForeign(t *testing.T) {
	c, _ := newCache(t)
	foreign := cache.Entry{ID: "f", SPIFFEID: spiffeid.RequireFromString("spiffe://other.org/x"), Selectors: []string{"unix:uid:1"}}
	noID := entry("", "/noid", "unix:uid:1")
	changed := c.ApplyEntries(true, []cache.Entry{foreign, noID, entry("ok", "/ok", "unix:uid:1")}, nil)
	if diff := cmp.Diff([]string{"ok"}, ids(changed)); diff != "" {
		t.Errorf("changed (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"ok"}, ids(c.Entries())); diff != "" {
		t.Errorf("Entries (-want +got):\n%s", diff)
	}
}

// TestSelectorChangeMovesIdentity: an entry re-registered under other
// selectors leaves one workload and reaches another, SVID and all.
func TestSelectorChangeMovesIdentity(t *testing.T) {
	c, _ := newCache(t)
	e := entry("e", "/e", "unix:uid:1")
	keep := entry("k", "/k", "unix:uid:1")
	c.ApplyEntries(true, []cache.Entry{e, keep}, nil)
	mustSetSVID(t, c, e, 1, start.Add(time.Hour))
	mustSetSVID(t, c, keep, 2, start.Add(time.Hour))
	if err := c.SetBundle(bundle(1), nil, 1); err != nil {
		t.Fatal(err)
	}
	one := c.Subscribe([]string{"unix:uid:1"})
	defer one.Close()
	two := c.Subscribe([]string{"unix:uid:2"})
	defer two.Close()
	<-one.Updates()
	<-two.Updates() // no entries

	moved := e
	moved.Selectors = []string{"unix:uid:2"}
	c.ApplyEntries(false, []cache.Entry{moved}, nil)
	if diff := cmp.Diff(summary{Entries: []string{"k"}, Identities: []string{"k#2"}, Bundle: 1, Revision: 1}, next(t, one)); diff != "" {
		t.Errorf("uid 1 (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(summary{Entries: []string{"e"}, Identities: []string{"e#1"}, Bundle: 1, Revision: 1}, next(t, two)); diff != "" {
		t.Errorf("uid 2 (-want +got):\n%s", diff)
	}
}

func TestSetSVIDErrors(t *testing.T) {
	e := entry("e", "/e", "unix:uid:1")
	e.DNSNames = []string{"a.example.org", "b.example.org"}
	later := start.Add(time.Hour)
	tests := []struct {
		name    string
		id      string
		svid    *x509svid.SVID
		wantErr error
	}{
		{name: "ok", id: "e", svid: svid(e.SPIFFEID, 1, later, "b.example.org", "A.example.org")},
		{name: "unknown entry", id: "nope", svid: svid(e.SPIFFEID, 1, later, e.DNSNames...), wantErr: cache.ErrUnknownEntry},
		{name: "nil", id: "e", wantErr: cache.ErrInvalidSVID},
		{name: "no certificates", id: "e", svid: &x509svid.SVID{ID: e.SPIFFEID, PrivateKey: key}, wantErr: cache.ErrInvalidSVID},
		{name: "no key", id: "e", svid: func() *x509svid.SVID { s := svid(e.SPIFFEID, 1, later, e.DNSNames...); s.PrivateKey = nil; return s }(), wantErr: cache.ErrInvalidSVID},
		{name: "other spiffe id", id: "e", svid: svid(spiffeid.RequireFromPath(td, "/old"), 1, later, e.DNSNames...), wantErr: cache.ErrSVIDMismatch},
		{name: "other dns names", id: "e", svid: svid(e.SPIFFEID, 1, later, "a.example.org"), wantErr: cache.ErrSVIDMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newCache(t)
			c.ApplyEntries(true, []cache.Entry{e}, nil)
			err := c.SetSVID(tt.id, tt.svid)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("SetSVID: err = %v, want %v", err, tt.wantErr)
			}
			if err != nil && c.SVID("e") != nil {
				t.Error("a refused SVID was stored")
			}
		})
	}
}

func TestSetBundle(t *testing.T) {
	c, _ := newCache(t)
	if c.Ready() {
		t.Fatal("Ready before SetBundle")
	}
	e := entry("e", "/e", "unix:uid:1")
	c.ApplyEntries(true, []cache.Entry{e}, nil)
	mustSetSVID(t, c, e, 1, start.Add(time.Hour))

	if err := c.SetBundle(nil, nil, 1); !errors.Is(err, cache.ErrNoBundle) {
		t.Errorf("nil bundle: err = %v, want ErrNoBundle", err)
	}
	other := x509bundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString("other.org"), nil)
	if err := c.SetBundle(other, nil, 1); !errors.Is(err, cache.ErrTrustDomainMismatch) {
		t.Errorf("foreign bundle: err = %v, want ErrTrustDomainMismatch", err)
	}
	if err := c.SetBundle(bundle(1), nil, 1); err != nil {
		t.Fatal(err)
	}
	if !c.Ready() {
		t.Fatal("not Ready after SetBundle")
	}
	sub := c.Subscribe([]string{"unix:uid:1"})
	defer sub.Close()
	<-sub.Updates()

	if err := c.SetBundle(bundle(1), jwtbundle.New(td), 2); err != nil {
		t.Fatal(err)
	}
	none(t, "same bundle, new revision", sub)
	if err := c.SetBundle(bundle(1, 2), nil, 3); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(summary{Entries: []string{"e"}, Identities: []string{"e#1"}, Bundle: 2, Revision: 3}, next(t, sub)); diff != "" {
		t.Errorf("after a new root (-want +got):\n%s", diff)
	}
}

// TestFederatedBundles: a workload gets only the federated bundles its
// entries federate with (issue 17), ordered by trust domain.
func TestFederatedBundles(t *testing.T) {
	c, _ := newCache(t)
	e := entry("e", "/e", "unix:uid:1")
	e.FederatesWith = []string{"b.org", "a.org"}
	f := entry("f", "/f", "unix:uid:2")
	f.FederatesWith = []string{"a.org"}
	g := entry("g", "/g", "unix:uid:3")
	c.ApplyEntries(true, []cache.Entry{e, f, g}, nil)
	for i, x := range []cache.Entry{e, f, g} {
		mustSetSVID(t, c, x, int64(i+1), start.Add(time.Hour))
	}
	if err := c.SetBundle(bundle(1), nil, 1); err != nil {
		t.Fatal(err)
	}
	sub := c.Subscribe([]string{"unix:uid:1"})
	defer sub.Close()
	<-sub.Updates()

	if err := c.SetFederatedBundles([]*x509bundle.Bundle{bundle(9)}, nil); !errors.Is(err, cache.ErrTrustDomainMismatch) {
		t.Errorf("own trust domain as federated: err = %v, want ErrTrustDomainMismatch", err)
	}
	b := spiffeid.RequireTrustDomainFromString("b.org")
	a := spiffeid.RequireTrustDomainFromString("a.org")
	fed := []*x509bundle.Bundle{x509bundle.New(b), x509bundle.New(a)}
	if err := c.SetFederatedBundles(fed, []*jwtbundle.Bundle{jwtbundle.New(b)}); err != nil {
		t.Fatal(err)
	}
	names := func(u *cache.Update) (x, j []string) {
		for _, fb := range u.FederatedBundles {
			x = append(x, fb.TrustDomain().Name())
		}
		for _, fb := range u.FederatedJWTBundles {
			j = append(j, fb.TrustDomain().Name())
		}
		return x, j
	}
	x, j := names(<-sub.Updates())
	if diff := cmp.Diff([]string{"a.org", "b.org"}, x); diff != "" {
		t.Errorf("federated bundles of uid 1 (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"b.org"}, j); diff != "" {
		t.Errorf("federated JWT bundles of uid 1 (-want +got):\n%s", diff)
	}
	if x, _ := names(c.Lookup([]string{"unix:uid:2"})); !slices.Equal(x, []string{"a.org"}) {
		t.Errorf("federated bundles of uid 2 = %v, want only a.org (its entry's)", x)
	}
	if x, _ := names(c.Lookup([]string{"unix:uid:3"})); len(x) != 0 {
		t.Errorf("federated bundles of uid 3 = %v, want none (its entry federates with nothing)", x)
	}
	if err := c.SetFederatedBundles(fed, []*jwtbundle.Bundle{jwtbundle.New(b)}); err != nil {
		t.Fatal(err)
	}
	none(t, "same federated bundles again", sub)

	// The entry stops federating with b.org: the workload loses it.
	e.FederatesWith = []string{"a.org"}
	e.Revision++
	c.ApplyEntries(false, []cache.Entry{e}, nil)
	if x, _ := names(<-sub.Updates()); !slices.Equal(x, []string{"a.org"}) {
		t.Errorf("after the entry dropped b.org: %v, want a.org only", x)
	}
}

func TestStats(t *testing.T) {
	c, _ := newCache(t)
	a, b, n := entry("a", "/a", "unix:uid:1"), entry("b", "/b", "unix:uid:1"), entry("n", "/n", "unix:uid:1")
	c.ApplyEntries(true, []cache.Entry{a, b, n}, nil)
	if svids, earliest := c.Stats(); svids != 0 || !earliest.IsZero() {
		t.Errorf("empty Stats() = %d, %v", svids, earliest)
	}
	mustSetSVID(t, c, a, 1, start.Add(2*time.Hour))
	mustSetSVID(t, c, b, 2, start.Add(time.Hour))
	svids, earliest := c.Stats()
	if svids != 2 || !earliest.Equal(start.Add(time.Hour)) {
		t.Errorf("Stats() = %d, %v; want 2, %v", svids, earliest, start.Add(time.Hour))
	}
}

func TestCloseIsIdempotentAndFreesGroup(t *testing.T) {
	c, _ := newCache(t)
	c.ApplyEntries(true, []cache.Entry{entry("e", "/e", "unix:uid:1")}, nil)
	s1 := c.Subscribe([]string{"unix:uid:1"})
	s2 := c.Subscribe([]string{"unix:uid:1"})
	if n, _ := cache.Groups(c); n != 1 {
		t.Errorf("two subscribers with one selector set: %d groups, want 1", n)
	}
	s1.Close()
	s1.Close()
	if _, ok := <-s1.Updates(); ok {
		t.Error("Updates not closed by Close")
	}
	if n, _ := cache.Groups(c); n != 1 {
		t.Errorf("one subscriber left: %d groups, want 1", n)
	}
	s2.Close()
	if n, keys := cache.Groups(c); n != 0 || keys != 0 {
		t.Errorf("all closed: %d groups, %d index keys; want 0, 0", n, keys)
	}
	// Entries outlive their subscribers' groups.
	c.ApplyEntries(false, nil, []string{"e"})
}

// TestManySubscribers runs readers, writers and subscribe/close churn at
// once (under -race) and checks every reader converges on the final state.
func TestManySubscribers(t *testing.T) {
	c, _ := newCache(t)
	const (
		nEntries  = 50
		nReaders  = 300
		nRotation = 20
	)
	var entries []cache.Entry
	for i := 0; i < nEntries; i++ {
		entries = append(entries, entry(fmt.Sprintf("e%02d", i), fmt.Sprintf("/w%d", i), fmt.Sprintf("unix:uid:%d", i%10)))
	}
	c.ApplyEntries(true, entries, nil)
	for _, e := range entries {
		mustSetSVID(t, c, e, 0, start.Add(time.Hour))
	}
	if err := c.SetBundle(bundle(1), nil, 1); err != nil {
		t.Fatal(err)
	}

	final := int64(nRotation)
	var wg sync.WaitGroup
	errs := make(chan error, nReaders)
	for r := 0; r < nReaders; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			uid := r % 10
			sub := c.Subscribe([]string{fmt.Sprintf("unix:uid:%d", uid), fmt.Sprintf("unix:path:/bin/%d", r%7)})
			defer sub.Close()
			timeout := time.After(20 * time.Second)
			for {
				select {
				case u := <-sub.Updates():
					if len(u.Identities) != nEntries/10 {
						errs <- fmt.Errorf("reader %d: %d identities, want %d", r, len(u.Identities), nEntries/10)
						return
					}
					done := true
					for _, id := range u.Identities {
						if serialOf(id.SVID) != final {
							done = false
						}
					}
					if done {
						return
					}
				case <-timeout:
					errs <- fmt.Errorf("reader %d: never saw the final state", r)
					return
				}
			}
		}()
	}
	// Churn: short-lived subscriptions come and go meanwhile.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			s := c.Subscribe([]string{fmt.Sprintf("unix:uid:%d", i%10)})
			s.Close()
		}
	}()
	for round := int64(1); round <= final; round++ {
		for _, e := range entries {
			mustSetSVID(t, c, e, round, start.Add(time.Hour))
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n, keys := cache.Groups(c); n != 0 || keys != 0 {
		t.Errorf("after all subscribers closed: %d groups, %d index keys; want 0, 0", n, keys)
	}
}

// TestBundleRevision: the revision reported to the CA is the one given
// with the last bundle, also when only the revision moved.
func TestBundleRevision(t *testing.T) {
	c, _ := newCache(t)
	if got := c.BundleRevision(); got != 0 {
		t.Fatalf("revision before any bundle = %d, want 0", got)
	}
	for _, step := range []struct {
		name string
		b    *x509bundle.Bundle
		rev  int64
	}{
		{name: "first bundle", b: bundle(1), rev: 3},
		{name: "same roots, new revision", b: bundle(1), rev: 4},
		{name: "new root", b: bundle(1, 2), rev: 9},
	} {
		if err := c.SetBundle(step.b, nil, step.rev); err != nil {
			t.Fatal(err)
		}
		if got := c.BundleRevision(); got != step.rev {
			t.Errorf("%s: revision %d, want %d", step.name, got, step.rev)
		}
		if got := c.Lookup(nil).BundleRevision; got != step.rev {
			t.Errorf("%s: Lookup's revision %d, want %d", step.name, got, step.rev)
		}
	}
}

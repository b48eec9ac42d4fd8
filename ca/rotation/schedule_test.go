package rotation_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-mesh/signet/ca"
	"github.com/signet-mesh/signet/ca/bundle"
	"github.com/signet-mesh/signet/ca/rotation"
	"github.com/signet-mesh/signet/ca/store"
)

// TestAutomaticRootSchedule runs the CA for 16 hours of a fake clock with
// 6-hour roots, the schedule on, and two agents that take a minute to
// apply each bundle and re-mint their SVIDs at half life; one of them
// falls behind on bundles for a while. Roots must be prepared at half of
// the active root's life, activated at five sixths (and not before the
// lagging agent trusts the new root), retired once nothing current chains
// to the old one, and no SVID or server certificate may ever fail to
// verify.
func TestAutomaticRootSchedule(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	const rootTTL = 6 * time.Hour

	type agent struct {
		node, entry string
		id          spiffeid.ID
		svid, nodeS *ca.X509SVID
		svidAt      time.Time
		nodeAt      time.Time
		bundle      *bundle.Bundle // applied
		next        *bundle.Bundle // received, applied next step
		frozen      func(time.Time) bool
	}
	var (
		mu     sync.Mutex
		agents []*agent
	)
	applied := func() map[string]int64 {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]int64{}
		for _, a := range agents {
			out[a.node] = a.bundle.Revision
		}
		return out
	}
	in := e.startMemKeys(t, newMemKeys(), rotation.Config{
		RootTTL: rootTTL, IntermediateTTL: time.Hour,
		AutoRotateRoots: true, ConnectedAgents: applied,
	})
	start := e.clock.Now()
	// Agent b applies no bundle from 2h55m to 5h20m, so it has not seen
	// the root prepared at 3h when the first activation comes due at 5h.
	lagFrom, lagTo := start.Add(2*time.Hour+55*time.Minute), start.Add(5*time.Hour+20*time.Minute)
	const svidTTL = 10 * time.Minute
	for i, n := range []string{nodeA, nodeB} {
		a := &agent{node: n, entry: fmt.Sprintf("e%d", i), id: spiffeid.RequireFromPath(td, fmt.Sprintf("/w%d", i)), frozen: func(time.Time) bool { return false }}
		if i == 1 {
			a.frozen = func(now time.Time) bool { return !now.Before(lagFrom) && now.Before(lagTo) }
		}
		register(t, in, a.node, a.entry, a.id, e.clock.Now())
		a.svid, a.svidAt = issue(t, in, a.id, svidTTL, a.node, a.entry), e.clock.Now()
		a.nodeS, a.nodeAt = issue(t, in, spiffeid.RequireFromString(a.node), time.Hour, a.node, ""), e.clock.Now()
		a.bundle = readBundle(t, in)
		a.next = a.bundle
		agents = append(agents, a)
	}

	type seen struct{ prepared, activated, retired time.Time }
	roots := map[string]*seen{}
	lives := map[string][2]time.Time{} // root ID -> not before, not after
	var activeAt []string              // active root, in order
	for now := start; now.Before(start.Add(16 * time.Hour)); {
		e.clock.Advance(time.Minute)
		now = e.clock.Now()
		in.m.Tick(ctx)

		for _, a := range authorities(t, in.store) {
			if a.Kind != store.KindRoot {
				continue
			}
			s := roots[a.ID]
			if s == nil {
				s = &seen{}
				roots[a.ID] = s
				lives[a.ID] = [2]time.Time{a.NotBefore, a.NotAfter}
			}
			switch {
			case a.State == store.StatePrepared && s.prepared.IsZero():
				s.prepared = now
			case a.State == store.StateActive && s.activated.IsZero():
				s.activated = now
				activeAt = append(activeAt, a.ID)
			case a.State == store.StateRetired && s.retired.IsZero():
				s.retired = now
			}
		}

		server := readBundle(t, in)
		mu.Lock()
		for _, a := range agents {
			if !a.frozen(now) {
				a.bundle, a.next = a.next, server
			}
			if !now.Before(a.svidAt.Add(svidTTL / 2)) {
				a.svid, a.svidAt = issue(t, in, a.id, svidTTL, a.node, a.entry), now
			}
			if !now.Before(a.nodeAt.Add(30 * time.Minute)) {
				a.nodeS, a.nodeAt = issue(t, in, spiffeid.RequireFromString(a.node), time.Hour, a.node, ""), now
			}
		}
		mu.Unlock()

		srv, err := in.srv.Certificate()
		if err != nil {
			t.Fatal(err)
		}
		srvChain := []*x509.Certificate{srv.Leaf, mustParse(t, srv.Certificate[1])}
		for i, a := range agents {
			peer := agents[1-i]
			if err := verifyAt(a.svid.Chain, peer.bundle, now); err != nil {
				t.Fatalf("%v: %s's SVID fails at %s: %v", now.Sub(start), a.id, peer.node, err)
			}
			if err := verifyAt(a.nodeS.Chain, server, now); err != nil {
				t.Fatalf("%v: node SVID of %s fails at the server: %v", now.Sub(start), a.node, err)
			}
			if err := verifyAt(srvChain, a.bundle, now); err != nil {
				t.Fatalf("%v: server certificate fails at %s: %v", now.Sub(start), a.node, err)
			}
		}
	}

	// activeAt[0] is the first root; each later one was prepared at half
	// of its predecessor's life and activated at five sixths of it, and
	// each predecessor was retired.
	if len(activeAt) < 4 {
		t.Fatalf("%d roots were active over 16 hours of 6-hour roots, want at least 4", len(activeAt))
	}
	for i, id := range activeAt {
		s := roots[id]
		at := func(t time.Time) string {
			if t.IsZero() {
				return "-"
			}
			return t.Sub(start).String()
		}
		t.Logf("root %d: prepared %s, activated %s, retired %s", i, at(s.prepared), at(s.activated), at(s.retired))
	}
	for i := 1; i < len(activeAt); i++ {
		prev, cur := activeAt[i-1], activeAt[i]
		life := lives[prev]
		half := life[0].Add(life[1].Sub(life[0]) / 2)
		fiveSixths := life[0].Add(life[1].Sub(life[0]) * 5 / 6)
		s := roots[cur]
		if s.prepared.Before(half) || s.prepared.After(half.Add(2*time.Minute)) {
			t.Errorf("root %d prepared at %v, want at half its predecessor's life, %v", i, s.prepared.Sub(start), half.Sub(start))
		}
		if s.activated.Before(fiveSixths) || (i > 1 && s.activated.After(fiveSixths.Add(3*time.Minute))) {
			t.Errorf("root %d activated at %v, want at five sixths of its predecessor's life, %v", i, s.activated.Sub(start), fiveSixths.Sub(start))
		}
		if roots[prev].retired.IsZero() && i < len(activeAt)-1 {
			t.Errorf("root %d was never retired", i-1)
		}
	}
	if first := roots[activeAt[1]].activated; first.Before(lagTo) {
		t.Errorf("first scheduled activation at %v, before the lagging agent applied the bundle (%v)", first.Sub(start), lagTo.Sub(start))
	}
	if got := len(readBundle(t, in).X509Authorities); got > 2 {
		t.Errorf("bundle holds %d roots, want at most 2", got)
	}
}

// TestScheduleLeavesImportedRoot: a root from the organisation's PKI is
// never replaced by the schedule; the operator is told instead.
func TestScheduleLeavesImportedRoot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	org := newOrgCert(t, "Acme Root", nil, e.clock.Now(), nil)
	files := t.TempDir()
	var logs bytes.Buffer
	var logMu sync.Mutex
	in := e.start(t, rotation.Config{
		ImportRoot:      &rotation.Import{CertFile: writeCerts(t, files, "root.pem", org.cert), KeyFile: writeKey(t, files, "root.key", org.key, nil)},
		AutoRotateRoots: true, ConnectedAgents: func() map[string]int64 { return nil },
		Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, nil)),
	})
	e.clock.Advance(3 * 365 * 24 * time.Hour) // past half of its 5 years
	in.m.Tick(ctx)
	for _, a := range authorities(t, in.store) {
		if a.Kind == store.KindRoot && a.State != store.StateActive {
			t.Errorf("schedule made root %s (%s) beside the imported one", a.ID, a.State)
		}
	}
	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(logs.String(), "was imported from your PKI") {
		t.Errorf("no log telling the operator to prepare the imported root's successor:\n%s", logs.String())
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestScheduleStatus: what `signet root status` shows of the schedule.
func TestScheduleStatus(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	in := e.startMemKeys(t, newMemKeys(), rotation.Config{
		RootTTL: 6 * time.Hour, AutoRotateRoots: true, ConnectedAgents: func() map[string]int64 { return nil },
	})
	root := find(authorities(t, in.store), store.KindRoot, store.StateActive)
	life := root.NotAfter.Sub(root.NotBefore)
	check := func(want rotation.ScheduleStatus) {
		t.Helper()
		got, err := in.m.Schedule(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got.Automatic != want.Automatic || got.NextStep != want.NextStep || !got.NextStepAt.Equal(want.NextStepAt) {
			t.Errorf("Schedule() = %+v, want %+v", got, want)
		}
	}
	check(rotation.ScheduleStatus{Automatic: true, NextStep: "prepare", NextStepAt: root.NotBefore.Add(life / 2)})
	res, err := in.m.PrepareRoot(ctx, rotation.PrepareParams{})
	if err != nil {
		t.Fatal(err)
	}
	check(rotation.ScheduleStatus{Automatic: true, NextStep: "activate " + res.Authority.ID, NextStepAt: root.NotBefore.Add(life * 5 / 6)})
	if _, err := in.m.ActivateRoot(ctx, rotation.ActivateParams{}); err != nil {
		t.Fatal(err)
	}
	check(rotation.ScheduleStatus{Automatic: true, NextStep: "retire " + root.ID})

	manual := newEnv(t).startMemKeys(t, newMemKeys(), rotation.Config{})
	if got, err := manual.m.Schedule(ctx); err != nil || got.Automatic || got.NextStep != "" {
		t.Errorf("Schedule() without the schedule = %+v, %v; want nothing", got, err)
	}
}

// TestScheduleLooksEveryTick: for short roots the schedule looks at every
// one of Run's ticks, even when the ticks come a little early, so a step is
// never taken more than a tick after it is due. (A look skipped to jitter
// once made a 90-second root expire before its successor was activated.)
func TestScheduleLooksEveryTick(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	in := e.startMemKeys(t, newMemKeys(), rotation.Config{
		RootTTL: 10 * time.Minute, AutoRotateRoots: true, ConnectedAgents: func() map[string]int64 { return nil },
	})
	root := find(authorities(t, in.store), store.KindRoot, store.StateActive)
	due := root.NotBefore.Add(root.NotAfter.Sub(root.NotBefore) / 2)
	const tick = 10*time.Second - 10*time.Millisecond // a tick that fires a little early
	for {
		e.clock.Advance(tick)
		in.m.Tick(ctx)
		if find(authorities(t, in.store), store.KindRoot, store.StatePrepared) != nil {
			break
		}
		if late := e.clock.Now().Sub(due); late > tick {
			t.Fatalf("no root prepared %v after it was due", late)
		}
	}
	if late := e.clock.Now().Sub(due); late < 0 || late > tick {
		t.Errorf("root prepared %v after it was due, want within one tick", late)
	}
}

// TestNewLeaderTakesDueStepAtOnce: a replica that becomes the leader takes
// the step its predecessor left due when Wake is called, without waiting
// for Run's next tick. (A replica that took over ten seconds before a
// 90-second root expired once let it expire before activating its
// successor, because it waited for its next tick.)
func TestNewLeaderTakesDueStepAtOnce(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	e := newEnv(t)
	var leading atomic.Bool
	looked := make(chan struct{}, 1)
	in := e.startMemKeys(t, newMemKeys(), rotation.Config{
		RootTTL: 10 * time.Minute, AutoRotateRoots: true, ConnectedAgents: func() map[string]int64 { return nil },
		Leading: func() bool {
			select {
			case looked <- struct{}{}:
			default:
			}
			return leading.Load()
		},
	})
	e.clock.Advance(6 * time.Minute) // past half of the root's life: a prepare is due
	done := make(chan error, 1)
	go func() { done <- in.m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	<-looked // Run's first look, while another replica leads
	if find(authorities(t, in.store), store.KindRoot, store.StatePrepared) != nil {
		t.Fatal("a root was prepared by a replica that does not lead")
	}
	leading.Store(true)
	in.m.Wake() // the clock does not move: no tick will come
	deadline := time.Now().Add(10 * time.Second)
	for find(authorities(t, in.store), store.KindRoot, store.StatePrepared) == nil {
		if time.Now().After(deadline) {
			t.Fatal("the new leader did not prepare the due root after Wake")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

package rotation

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/signet-mesh/signet/ca/store"
)

// auth is an authority for planner tests: valid from nb to na around t0.
func auth(id string, kind store.AuthorityKind, state store.AuthorityState, parent string, nb, na time.Duration) *store.Authority {
	return &store.Authority{ID: id, Kind: kind, State: state, ParentID: parent, NotBefore: t0.Add(nb), NotAfter: t0.Add(na)}
}

func on(server string, a *store.Authority) *store.Authority { a.ServerName = server; return a }

func crossSigned(by string, a *store.Authority) *store.Authority {
	a.CrossSignedBy, a.CrossSignedDER = by, []byte{1}
	return a
}

func upstream(a *store.Authority) *store.Authority { a.UpstreamChainDER = [][]byte{{1}}; return a }

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	root  = store.KindRoot
	inter = store.KindIntermediate
	jwt   = store.KindJWT

	prepared = store.StatePrepared
	active   = store.StateActive
	retiring = store.StateRetiring
	retired  = store.StateRetired
)

const day = 24 * time.Hour

// fresh is a store right after a first start: everything young.
func fresh() []*store.Authority {
	return []*store.Authority{
		auth("r1", root, active, "", -day, 365*day),
		auth("i1", inter, active, "r1", -day, 6*day),
		auth("j1", jwt, active, "", -day, 6*day),
	}
}

func TestNext(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		auths []*store.Authority
		want  step
	}{
		{"empty store", nil, step{CreateRoot: true, Intermediate: true, JWT: active, BundleChanged: true}},
		{"nothing due", fresh(), step{}},
		{"intermediate at half life", []*store.Authority{
			auth("r1", root, active, "", -day, 365*day),
			auth("i1", inter, active, "r1", -4*day, 4*day),
			auth("j1", jwt, active, "", -day, 6*day),
		}, step{Intermediate: true, Transitions: []transition{{"i1", retired}}}},
		{"intermediate under a root no longer active", []*store.Authority{
			auth("r0", root, retired, "", -day, 365*day),
			auth("r1", root, active, "", -day, 365*day),
			auth("i0", inter, active, "r0", -day, 6*day),
			auth("j1", jwt, active, "", -day, 6*day),
		}, step{Intermediate: true, Transitions: []transition{{"i0", retired}}}},
		{"retiring root cross-signs the intermediate", []*store.Authority{
			auth("r0", root, retiring, "", -day, 365*day),
			auth("r1", root, active, "", -day, 365*day),
			auth("i1", inter, active, "r1", -day, 6*day),
			auth("j1", jwt, active, "", -day, 6*day),
		}, step{CrossSignBy: "r0"}},
		{"already cross-signed", []*store.Authority{
			auth("r0", root, retiring, "", -day, 365*day),
			auth("r1", root, active, "", -day, 365*day),
			crossSigned("r0", auth("i1", inter, active, "r1", -day, 6*day)),
			auth("j1", jwt, active, "", -day, 6*day),
		}, step{}},
		{"a new intermediate is cross-signed too", []*store.Authority{
			auth("r0", root, retiring, "", -day, 365*day),
			auth("r1", root, active, "", -day, 365*day),
			crossSigned("r0", auth("i1", inter, active, "r1", -4*day, 4*day)),
			auth("j1", jwt, active, "", -day, 6*day),
		}, step{Intermediate: true, CrossSignBy: "r0", Transitions: []transition{{"i1", retired}}}},
		{"retiring root from an upstream PKI does not cross-sign", []*store.Authority{
			upstream(auth("r0", root, retiring, "", -day, 365*day)),
			auth("r1", root, active, "", -day, 365*day),
			auth("i1", inter, active, "r1", -day, 6*day),
			auth("j1", jwt, active, "", -day, 6*day),
		}, step{}},
		{"expired retiring root does not cross-sign", []*store.Authority{
			auth("r0", root, retiring, "", -365*day, -time.Hour),
			auth("r1", root, active, "", -day, 365*day),
			auth("i1", inter, active, "r1", -day, 6*day),
			auth("j1", jwt, active, "", -day, 6*day),
		}, step{}},
		{"JWT key at half life gets a prepared successor", []*store.Authority{
			auth("r1", root, active, "", -day, 365*day),
			auth("i1", inter, active, "r1", -day, 6*day),
			auth("j1", jwt, active, "", -4*day, 4*day),
		}, step{JWT: prepared, BundleChanged: true}},
		{"at three quarters the successor signs", []*store.Authority{
			auth("r1", root, active, "", -day, 365*day),
			auth("i1", inter, active, "r1", -day, 6*day),
			auth("j1", jwt, active, "", -6*day, 2*day),
			auth("j2", jwt, prepared, "", -2*day, 6*day),
		}, step{Transitions: []transition{{"j1", retiring}, {"j2", active}}}},
		{"a retiring JWT key leaves at its expiry", []*store.Authority{
			auth("r1", root, active, "", -day, 365*day),
			auth("i1", inter, active, "r1", -day, 6*day),
			auth("j0", jwt, retiring, "", -8*day, 0),
			auth("j1", jwt, active, "", -day, 6*day),
		}, step{Transitions: []transition{{"j0", retired}}, BundleChanged: true}},
		{"down through the activation point: the prepared key signs", []*store.Authority{
			auth("r1", root, active, "", -day, 365*day),
			auth("i1", inter, active, "r1", -day, 6*day),
			auth("j1", jwt, active, "", -8*day, -time.Hour),
			auth("j2", jwt, prepared, "", -4*day, 4*day),
		}, step{Transitions: []transition{{"j1", retired}, {"j2", active}}, BundleChanged: true}},
		{"down past a whole key life: a new active key", []*store.Authority{
			auth("r1", root, active, "", -day, 365*day),
			auth("i1", inter, active, "r1", -day, 6*day),
			auth("j1", jwt, active, "", -9*day, -2*day),
			auth("j2", jwt, prepared, "", -5*day, -time.Hour),
		}, step{JWT: active, Transitions: []transition{{"j1", retired}, {"j2", retired}}, BundleChanged: true}},
		{"records of another server are left alone", []*store.Authority{
			auth("r1", root, active, "", -day, 365*day),
			on("b", auth("ib", inter, active, "r1", -4*day, 4*day)),
			on("b", auth("jb", jwt, active, "", -8*day, -time.Hour)),
		}, step{Intermediate: true, JWT: active, BundleChanged: true}},
		{"records without a server name are the default server's", []*store.Authority{
			auth("r1", root, active, "", -day, 365*day),
			on("", auth("i1", inter, active, "r1", -4*day, 4*day)),
			on(DefaultServerName, auth("j1", jwt, active, "", -day, 6*day)),
		}, step{Intermediate: true, Transitions: []transition{{"i1", retired}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := next(tt.auths, t0, DefaultServerName)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("next (-want +got):\n%s", diff)
			}
		})
	}
}

// TestNextIsStable: a step applied as planned leaves nothing to do.
func TestNextIsStable(t *testing.T) {
	t.Parallel()
	auths := fresh()
	if st := next(auths, t0, DefaultServerName); !st.IsZero() {
		t.Errorf("next on a fresh store = %+v, want nothing to do", st)
	}
	if st := next(auths, t0, "b"); !st.Intermediate || st.JWT != active || len(st.Transitions) != 0 {
		t.Errorf("next for a second server = %+v, want its own intermediate and JWT key, nothing of the first moved", st)
	}
}

func TestNextEvent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		auths []*store.Authority
		want  time.Time
	}{
		{"intermediate half life first", fresh(), t0.Add(5 * day / 2)},
		{"three quarters of the JWT key once a successor is prepared", []*store.Authority{
			auth("r1", root, active, "", -day, 365*day),
			auth("i1", inter, active, "r1", 0, 8*day),
			auth("j1", jwt, active, "", -4*day, 4*day),
			auth("j2", jwt, prepared, "", 0, 8*day),
		}, t0.Add(2 * day)},
		{"a retiring JWT key's expiry", []*store.Authority{
			auth("r1", root, active, "", -day, 365*day),
			auth("i1", inter, active, "r1", 0, 8*day),
			auth("j0", jwt, retiring, "", -7*day, time.Hour),
			auth("j1", jwt, active, "", 0, 8*day),
		}, t0.Add(time.Hour)},
		{"another server's authorities do not count", []*store.Authority{
			auth("r1", root, active, "", -day, 365*day),
			auth("i1", inter, active, "r1", 0, 8*day),
			on("b", auth("ib", inter, active, "r1", -day, time.Hour)),
			auth("j1", jwt, active, "", 0, 8*day),
		}, t0.Add(4 * day)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nextEvent(tt.auths, DefaultServerName); !got.Equal(tt.want) {
				t.Errorf("nextEvent = %v, want %v", got, tt.want)
			}
		})
	}
}

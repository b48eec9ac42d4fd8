package api

import (
	"context"
	"fmt"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/ca/rotation"
	"github.com/signet-mesh/signet/ca/store"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

// fakeRoots is a RootRotation that returns fixed authorities or err, and
// records the activation it was asked for.
type fakeRoots struct {
	auths    []rotation.AuthorityStatus
	err      error
	activate rotation.ActivateParams
	schedule rotation.ScheduleStatus
}

func (f *fakeRoots) Authorities(context.Context) ([]rotation.AuthorityStatus, int64, error) {
	return f.auths, 9, f.err
}

func (f *fakeRoots) Schedule(context.Context) (rotation.ScheduleStatus, error) {
	return f.schedule, nil
}

func (f *fakeRoots) PrepareRoot(context.Context, rotation.PrepareParams) (*rotation.PrepareResult, error) {
	return nil, f.err
}

func (f *fakeRoots) ActivateRoot(_ context.Context, p rotation.ActivateParams) (*store.Authority, error) {
	f.activate = p
	if f.err != nil {
		return nil, f.err
	}
	return &f.auths[0].Authority, nil
}

func (f *fakeRoots) RetireRoot(context.Context, rotation.RetireParams) (*store.Authority, error) {
	return nil, f.err
}

func TestListAuthoritiesCountsAgents(t *testing.T) {
	conns := NewConnections()
	td := spiffeid.RequireTrustDomainFromString("example.org")
	for i, applied := range []int64{9, 7, 3} {
		id := spiffeid.RequireFromPath(td, fmt.Sprintf("/signet/agent/join_token/n%d", i))
		conns.connect(id)
		conns.setApplied(id, applied)
	}
	f := &fakeRoots{auths: []rotation.AuthorityStatus{
		{Authority: store.Authority{ID: "new", Kind: store.KindRoot, State: store.StatePrepared, BundleRevision: 7}, UnexpiredSVIDs: 0},
		{Authority: store.Authority{ID: "old", Kind: store.KindRoot, State: store.StateActive}, UnexpiredSVIDs: 5, ExpiringSoon: true},
		{Authority: store.Authority{ID: "gone", Kind: store.KindRoot, State: store.StateRetired}},
		{Authority: store.Authority{ID: "i", Kind: store.KindIntermediate, State: store.StateActive, ParentID: "old"}, UnexpiredSVIDs: 5},
	}}
	s := NewAdminService(AdminConfig{Connections: conns, Roots: f})
	resp, err := s.ListAuthorities(context.Background(), &adminv1.ListAuthoritiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.BundleRevision != 9 {
		t.Errorf("bundle revision %d, want 9", resp.BundleRevision)
	}
	for i, want := range []struct{ applied, connected int64 }{{2, 3}, {3, 3}, {0, 0}, {0, 0}} {
		a := resp.Authorities[i]
		if a.AgentsApplied != want.applied || a.ConnectedAgents != want.connected {
			t.Errorf("%s: %d/%d agents applied, want %d/%d", a.Id, a.AgentsApplied, a.ConnectedAgents, want.applied, want.connected)
		}
	}
	if a := resp.Authorities[1]; a.UnexpiredSvids != 5 || !a.ExpiringSoon {
		t.Errorf("old root: %v", a)
	}

	// Activation gets the same view of the agents.
	if _, err := s.ActivateRoot(context.Background(), &adminv1.ActivateRootRequest{Force: true}); err != nil {
		t.Fatal(err)
	}
	if got := f.activate; len(got.Agents) != 3 || !got.Force || got.Agents["spiffe://example.org/signet/agent/join_token/n2"] != 3 {
		t.Errorf("activation params %+v", got)
	}
}

func TestRootErrors(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code codes.Code
		msg  string
	}{
		{fmt.Errorf("wrapped: %w", rotation.ErrUnsafe), codes.FailedPrecondition, "wrapped: rotation: unsafe"},
		{rotation.ErrRefused, codes.FailedPrecondition, "rotation: refused"},
		{rotation.ErrAuthorityNotFound, codes.NotFound, "rotation: authority not found"},
		{rotation.ErrInvalidImport, codes.InvalidArgument, "rotation: invalid import"},
		{fmt.Errorf("disk on fire"), codes.Internal, "retiring root: internal error"},
	} {
		s := NewAdminService(AdminConfig{Roots: &fakeRoots{err: tc.err}})
		_, err := s.RetireRoot(context.Background(), &adminv1.RetireRootRequest{})
		if st := status.Convert(err); st.Code() != tc.code || st.Message() != tc.msg {
			t.Errorf("%v: got %v %q, want %v %q", tc.err, st.Code(), st.Message(), tc.code, tc.msg)
		}
	}
	if _, err := NewAdminService(AdminConfig{}).ListAuthorities(context.Background(), nil); status.Code(err) != codes.Unimplemented {
		t.Errorf("without Roots: %v, want Unimplemented", err)
	}
}

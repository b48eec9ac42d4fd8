package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/ca/store"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

// auditSince returns the records after seq.
func auditSince(t *testing.T, c *testCA, seq uint64) []audit.Record {
	t.Helper()
	var out []audit.Record
	if err := audit.Scan(context.Background(), c.srv.Store(), seq+1, 0, func(r audit.Record) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func auditHead(t *testing.T, c *testCA) uint64 {
	t.Helper()
	var head uint64
	if err := c.srv.Store().View(context.Background(), func(tx store.Tx) error {
		var err error
		head, _, err = tx.AuditHead()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return head
}

// TestAuditEveryChange: every state-changing admin call and node RPC
// leaves exactly one audit record, naming the right actor and subject.
func TestAuditEveryChange(t *testing.T) {
	c := startCA(t, testOpts{})
	ctx := context.Background()
	uname := strconv.Itoa(os.Getuid())
	if u, err := user.Current(); err == nil {
		uname = u.Username
	}
	admin := audit.AdminActor(uint32(os.Getuid()), uname)

	var (
		tok     string
		nodeID  string
		n       *node
		entryID string
	)
	steps := []struct {
		name           string
		do             func() error
		typ, outcome   string
		actor, subject func() string
	}{
		{"token create", func() (err error) { tok, nodeID = c.token(t, "audited", time.Minute); return nil },
			audit.TypeTokenCreated, audit.OutcomeSuccess, fixed(admin), func() string { return nodeID }},
		{"attest with unknown token", func() error {
			_, err := c.anonClient(t).AttestNode(ctx, &nodev1.AttestNodeRequest{JoinToken: "bogus", Csr: csr(t, newKey(t))})
			if status.Code(err) != codes.PermissionDenied {
				return fmt.Errorf("got %v", err)
			}
			return nil
		}, audit.TypeNodeAttested, audit.OutcomeFailure, fixed(""), fixed("")},
		{"attest", func() error { n = c.attestWithToken(t, tok); return nil },
			audit.TypeNodeAttested, audit.OutcomeSuccess, func() string { return nodeID }, func() string { return nodeID }},
		{"renew node SVID", func() error {
			_, err := n.client.RenewNodeSVID(ctx, &nodev1.RenewNodeSVIDRequest{Csr: csr(t, newKey(t))})
			return err
		}, audit.TypeNodeRenewed, audit.OutcomeSuccess, func() string { return nodeID }, func() string { return nodeID }},
		{"entry create", func() error { entryID = c.entry(t, "spiffe://example.org/audited", nodeID); return nil },
			audit.TypeEntryCreated, audit.OutcomeSuccess, fixed(admin), fixed("spiffe://example.org/audited")},
		{"mint X509-SVID", func() error {
			resp, err := n.client.MintX509SVIDs(ctx, &nodev1.MintX509SVIDsRequest{Params: []*nodev1.MintX509SVIDParams{{EntryId: entryID, Csr: csr(t, newKey(t))}}})
			if err == nil && resp.Results[0].Code != 0 {
				err = errors.New(resp.Results[0].Message)
			}
			return err
		}, audit.TypeSVIDIssued, audit.OutcomeSuccess, func() string { return nodeID }, fixed("spiffe://example.org/audited")},
		{"mint JWT-SVID", func() error {
			_, err := n.client.MintJWTSVID(ctx, &nodev1.MintJWTSVIDRequest{EntryId: entryID, Audience: []string{"x"}})
			return err
		}, audit.TypeJWTIssued, audit.OutcomeSuccess, func() string { return nodeID }, fixed("spiffe://example.org/audited")},
		{"entry delete", func() error {
			_, err := c.admin.DeleteEntry(ctx, &adminv1.DeleteEntryRequest{Id: entryID})
			return err
		}, audit.TypeEntryDeleted, audit.OutcomeSuccess, fixed(admin), fixed("spiffe://example.org/audited")},
		{"root prepare", func() error {
			_, err := c.admin.PrepareRoot(ctx, &adminv1.PrepareRootRequest{})
			return err
		}, audit.TypeAuthorityPrepared, audit.OutcomeSuccess, fixed(admin), fixed("")},
		{"root activate", func() error {
			_, err := c.admin.ActivateRoot(ctx, &adminv1.ActivateRootRequest{Force: true})
			return err
		}, audit.TypeAuthorityActivated, audit.OutcomeSuccess, fixed(admin), fixed("")},
		{"root retire", func() error {
			_, err := c.admin.RetireRoot(ctx, &adminv1.RetireRootRequest{Force: true})
			return err
		}, audit.TypeAuthorityRetired, audit.OutcomeSuccess, fixed(admin), fixed("")},
		{"mtls set", func() error {
			_, err := c.admin.SetMTLSPolicy(ctx, &adminv1.SetMTLSPolicyRequest{Policy: &adminv1.MTLSPolicy{Mode: adminv1.MTLSMode_MTLS_MODE_STRICT, SpiffeId: "spiffe://example.org/web"}, Force: true})
			return err
		}, audit.TypeMTLSPolicySet, audit.OutcomeSuccess, fixed(admin), fixed("spiffe://example.org/web")},
		{"node evict", func() error {
			_, err := c.admin.EvictNode(ctx, &adminv1.EvictNodeRequest{SpiffeId: nodeID})
			return err
		}, audit.TypeNodeEvicted, audit.OutcomeSuccess, fixed(admin), func() string { return nodeID }},
	}
	for _, st := range steps {
		before := auditHead(t, c)
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		recs := auditSince(t, c, before)
		if len(recs) != 1 {
			t.Fatalf("%s: %d audit records, want exactly 1: %+v", st.name, len(recs), recs)
		}
		r := recs[0]
		if r.Type != st.typ || r.Outcome != st.outcome || r.Actor != st.actor() || r.Subject != st.subject() {
			t.Errorf("%s: record %s/%s actor %q subject %q; want %s/%s actor %q subject %q",
				st.name, r.Type, r.Outcome, r.Actor, r.Subject, st.typ, st.outcome, st.actor(), st.subject())
		}
	}
}

func fixed(s string) func() string { return func() string { return s } }

// failingStore fails every audit append while fail is set, the way a full
// disk or an I/O error would.
type failingStore struct {
	store.Store
	fail *atomic.Bool
}

type failingTx struct {
	store.Tx
	fail *atomic.Bool
}

func (t failingTx) AppendAudit(r *store.AuditRecord) error {
	if t.fail.Load() {
		return errors.New("injected write error")
	}
	return t.Tx.AppendAudit(r)
}

func (s failingStore) Update(ctx context.Context, fn func(store.Tx) error) error {
	return s.Store.Update(ctx, func(tx store.Tx) error { return fn(failingTx{tx, s.fail}) })
}

func (s failingStore) Batch(ctx context.Context, fn func(store.Tx) error) error {
	return s.Store.Batch(ctx, func(tx store.Tx) error { return fn(failingTx{tx, s.fail}) })
}

// TestAuditFailClosed: when the audit record cannot be written, the change
// fails: no certificate is returned and nothing is stored.
func TestAuditFailClosed(t *testing.T) {
	var fail atomic.Bool
	c := startCA(t, testOpts{wrapStore: func(s store.Store) store.Store { return failingStore{s, &fail} }})
	ctx := context.Background()
	n := c.attest(t, "closed")
	entryID := c.entry(t, "spiffe://example.org/closed", n.id.String())
	svidsBefore, _ := c.admin.ListSVIDs(ctx, &adminv1.ListSVIDsRequest{})
	headBefore := auditHead(t, c)

	fail.Store(true)
	resp, err := n.client.MintX509SVIDs(ctx, &nodev1.MintX509SVIDsRequest{Params: []*nodev1.MintX509SVIDParams{{EntryId: entryID, Csr: csr(t, newKey(t))}}})
	if status.Code(err) != codes.Internal || resp != nil {
		t.Fatalf("mint with failing audit: %v, %v; want Internal and no certificate", resp, err)
	}
	if _, err := n.client.MintJWTSVID(ctx, &nodev1.MintJWTSVIDRequest{EntryId: entryID, Audience: []string{"x"}}); status.Code(err) != codes.Internal {
		t.Fatalf("JWT mint with failing audit: %v; want Internal", err)
	}
	if _, err := c.admin.CreateEntries(ctx, &adminv1.CreateEntriesRequest{Entries: []*adminv1.Entry{{SpiffeId: "spiffe://example.org/nope", ParentId: n.id.String(), Selectors: []string{"unix:uid:1"}}}}); err == nil {
		t.Fatal("entry create succeeded without its audit record")
	}
	fail.Store(false)

	svidsAfter, _ := c.admin.ListSVIDs(ctx, &adminv1.ListSVIDsRequest{})
	if len(svidsAfter.Svids) != len(svidsBefore.Svids) {
		t.Errorf("SVID index grew from %d to %d without audit records", len(svidsBefore.Svids), len(svidsAfter.Svids))
	}
	entries, _ := c.admin.ListEntries(ctx, &adminv1.ListEntriesRequest{SpiffeId: "spiffe://example.org/nope"})
	if len(entries.Entries) != 0 {
		t.Error("entry stored without its audit record")
	}
	if head := auditHead(t, c); head != headBefore {
		t.Errorf("audit head moved from %d to %d", headBefore, head)
	}
}

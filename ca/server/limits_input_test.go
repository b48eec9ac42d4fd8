package server

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/ca/store"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

// TestInputLimits: each limit on what an operator or an agent sends is a
// clear InvalidArgument naming the limit, refused before anything is
// signed or stored (issue 12, "Input limits").
func TestInputLimits(t *testing.T) {
	c := startCA(t, testOpts{})
	ctx := context.Background()
	n := c.attest(t, "limits")
	parent := n.id.String()
	entryID := c.entry(t, "spiffe://example.org/limits", parent)

	entry := func(mod func(e *adminv1.Entry)) func() error {
		return func() error {
			e := &adminv1.Entry{SpiffeId: "spiffe://example.org/w", ParentId: parent, Selectors: []string{"unix:uid:1"}}
			mod(e)
			_, err := c.admin.CreateEntries(ctx, &adminv1.CreateEntriesRequest{Entries: []*adminv1.Entry{e}})
			return err
		}
	}
	many := func(n int, f func(i int) string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = f(i)
		}
		return out
	}
	jwt := func(aud ...string) func() error {
		return func() error {
			_, err := n.client.MintJWTSVID(ctx, &nodev1.MintJWTSVIDRequest{EntryId: entryID, Audience: aud})
			return err
		}
	}
	tests := []struct {
		name string
		call func() error
		want string
	}{
		{"SPIFFE ID over 2048 bytes", entry(func(e *adminv1.Entry) { e.SpiffeId = "spiffe://example.org/" + strings.Repeat("a", 2048) }),
			"spiffe_id: is 2069 bytes, over the SPIFFE limit of 2048"},
		{"parent ID over 2048 bytes", entry(func(e *adminv1.Entry) { e.ParentId = parent + "/" + strings.Repeat("a", 2048) }),
			"parent_id: is " + strconv.Itoa(len(parent)+2049) + " bytes, over the SPIFFE limit of 2048"},
		{"trust domain over 255 bytes", entry(func(e *adminv1.Entry) { e.SpiffeId = "spiffe://" + strings.Repeat("t", 256) + "/w" }),
			"trust domain is 256 bytes, over the SPIFFE limit of 255"},
		{"selector over 256 bytes", entry(func(e *adminv1.Entry) { e.Selectors = []string{"unix:path:/" + strings.Repeat("p", 300)} }),
			"is 311 bytes, over the limit of 256"},
		{"33 selectors", entry(func(e *adminv1.Entry) {
			e.Selectors = many(33, func(i int) string { return "unix:uid:" + strconv.Itoa(i) })
		}),
			"at most 32 selectors are allowed, got 33"},
		{"33 DNS names", entry(func(e *adminv1.Entry) {
			e.DnsNames = many(33, func(i int) string { return fmt.Sprintf("h%d.example.org", i) })
		}),
			"at most 32 DNS names are allowed, got 33"},
		{"DNS name over 253 bytes", entry(func(e *adminv1.Entry) { e.DnsNames = []string{strings.Repeat("a.", 127)} }),
			"must be 1-253 characters"},
		{"wildcard DNS name", entry(func(e *adminv1.Entry) { e.DnsNames = []string{"*.example.org"} }),
			`dns_name "*.example.org": is a wildcard`},
		{"IP address as DNS name", entry(func(e *adminv1.Entry) { e.DnsNames = []string{"192.0.2.1"} }),
			`dns_name "192.0.2.1": is an IP address`},
		{"node name over 128 bytes", func() error {
			_, err := c.admin.CreateJoinToken(ctx, &adminv1.CreateJoinTokenRequest{NodeName: strings.Repeat("n", 129)})
			return err
		}, "must be 1-128 letters"},
		{"mTLS policy for an oversized SPIFFE ID", func() error {
			_, err := c.admin.SetMTLSPolicy(ctx, &adminv1.SetMTLSPolicyRequest{Policy: &adminv1.MTLSPolicy{
				Mode: adminv1.MTLSMode_MTLS_MODE_STRICT, SpiffeId: "spiffe://example.org/" + strings.Repeat("a", 2048)}})
			return err
		}, "over the SPIFFE limit of 2048"},
		{"17 JWT audiences", jwt(many(17, func(i int) string { return "aud" + strconv.Itoa(i) })...), "17 audiences exceed the limit of 16"},
		{"JWT audience over 512 bytes", jwt("db", strings.Repeat("x", 513)), "audience 2 is 513 bytes, over the limit of 512"},
		{"empty JWT audience", jwt("db", ""), "audience 2 is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			head := auditHead(t, c)
			entries, _ := c.admin.ListEntries(ctx, &adminv1.ListEntriesRequest{})
			err := tt.call()
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tt.want) {
				t.Fatalf("got %v, want InvalidArgument containing %q", err, tt.want)
			}
			if h := auditHead(t, c); h != head {
				t.Errorf("a refused request wrote %d audit records", h-head)
			}
			after, _ := c.admin.ListEntries(ctx, &adminv1.ListEntriesRequest{})
			if len(after.Entries) != len(entries.Entries) {
				t.Errorf("a refused request stored an entry")
			}
		})
	}

	// What the limits refuse by default, the request may allow.
	_, err := c.admin.CreateEntries(ctx, &adminv1.CreateEntriesRequest{AllowDnsWildcards: true, AllowDnsIpAddresses: true, Entries: []*adminv1.Entry{{
		SpiffeId: "spiffe://example.org/edge", ParentId: parent, Selectors: []string{"unix:uid:7"}, DnsNames: []string{"*.example.org", "192.0.2.1"},
	}}})
	if err != nil {
		t.Errorf("wildcard and IP DNS names with allow flags: %v", err)
	}
	if err := jwt(many(16, func(i int) string { return strings.Repeat("x", 509) + fmt.Sprintf("%03d", i) })...)(); err != nil {
		t.Errorf("JWT-SVID at the audience limits: %v", err)
	}
}

// diskFullStore fails every write the way a full disk does, while full is
// set.
type diskFullStore struct {
	store.Store
	full *atomic.Bool
}

func (s diskFullStore) Update(ctx context.Context, fn func(store.Tx) error) error {
	if s.full.Load() {
		return fmt.Errorf("committing transaction: write signet.db: %w", syscall.ENOSPC)
	}
	return s.Store.Update(ctx, fn)
}

// TestStoreErrorsNameTheirCause: a store error the caller can act on is
// not reported as an internal error.
func TestStoreErrorsNameTheirCause(t *testing.T) {
	var full atomic.Bool
	c := startCA(t, testOpts{wrapStore: func(s store.Store) store.Store { return diskFullStore{s, &full} }})
	ctx := context.Background()
	full.Store(true)
	_, err := c.admin.CreateJoinToken(ctx, &adminv1.CreateJoinTokenRequest{NodeName: "n"})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), "disk is full") {
		t.Errorf("token create on a full disk: %v, want ResourceExhausted saying the disk is full", err)
	}
	full.Store(false)
	if _, err := c.admin.CreateJoinToken(ctx, &adminv1.CreateJoinTokenRequest{NodeName: "n"}); err != nil {
		t.Errorf("token create once the disk has room: %v", err)
	}
}

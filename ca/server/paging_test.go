package server

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/ca/audit"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

// createEntries registers n entries for parent and returns their ids.
func createEntries(tb testing.TB, c *testCA, parent, prefix string, n int) []string {
	tb.Helper()
	req := &adminv1.CreateEntriesRequest{}
	for i := range n {
		req.Entries = append(req.Entries, &adminv1.Entry{SpiffeId: fmt.Sprintf("spiffe://example.org/%s/%d", prefix, i), ParentId: parent, Selectors: []string{"unix:uid:1000"}})
	}
	resp, err := c.admin.CreateEntries(context.Background(), req)
	if err != nil {
		tb.Fatal(err)
	}
	var ids []string
	for _, e := range resp.Entries {
		ids = append(ids, e.Id)
	}
	return ids
}

// TestListPagingWhileChanging: listings followed page by page while
// entries, nodes and SVIDs are created and deleted return every item that
// exists throughout exactly once, and no item twice (issue 16).
func TestListPagingWhileChanging(t *testing.T) {
	c := startCA(t, testOpts{noSync: true})
	ctx := context.Background()
	n := c.attest(t, "pager")
	stable := createEntries(t, c, n.id.String(), "stable", 300)
	var stableNodes []string
	for i := range 12 {
		stableNodes = append(stableNodes, c.attest(t, fmt.Sprintf("stable-%02d", i)).id.String())
	}

	// Churn: entries and nodes come and go while the listings run.
	churnCtx, stopChurn := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; churnCtx.Err() == nil; i++ {
			ids := createEntries(t, c, n.id.String(), fmt.Sprintf("churn%d", i), 5)
			if _, err := c.batch.DeleteEntries(ctx, &adminv1.DeleteEntriesRequest{Ids: ids[:3]}); err != nil {
				t.Errorf("churn: %v", err)
				return
			}
			c.attest(t, fmt.Sprintf("churn-%d", i))
		}
	})
	defer func() { stopChurn(); wg.Wait() }()

	listAll := func(what string, page func(token string) ([]string, string, error)) []string {
		var all []string
		token := ""
		for pages := 0; ; pages++ {
			items, next, err := page(token)
			if err != nil {
				t.Fatalf("%s page %d: %v", what, pages+1, err)
			}
			all = append(all, items...)
			if next == "" {
				return all
			}
			token = next
			time.Sleep(time.Millisecond) // let the churn interleave with the pages
		}
	}
	check := func(what string, got, want []string) {
		t.Helper()
		count := map[string]int{}
		for _, id := range got {
			count[id]++
			if count[id] == 2 {
				t.Errorf("%s: %s listed twice", what, id)
			}
		}
		for _, id := range want {
			if count[id] == 0 {
				t.Errorf("%s: %s, there throughout, was missed", what, id)
			}
		}
	}

	entries := listAll("entries", func(token string) ([]string, string, error) {
		resp, err := c.admin.ListEntries(ctx, &adminv1.ListEntriesRequest{PageSize: 7, PageToken: token})
		var ids []string
		for _, e := range resp.GetEntries() {
			ids = append(ids, e.Id)
		}
		return ids, resp.GetNextPageToken(), err
	})
	check("entries", entries, stable)
	nodes := listAll("nodes", func(token string) ([]string, string, error) {
		resp, err := c.admin.ListNodes(ctx, &adminv1.ListNodesRequest{PageSize: 3, PageToken: token, IncludeEvicted: true})
		var ids []string
		for _, n := range resp.GetNodes() {
			ids = append(ids, n.SpiffeId)
		}
		return ids, resp.GetNextPageToken(), err
	})
	check("nodes", nodes, stableNodes)
	before, err := c.admin.ListSVIDs(ctx, &adminv1.ListSVIDsRequest{PageSize: 10000})
	if err != nil {
		t.Fatal(err)
	}
	var stableSVIDs []string
	for _, s := range before.Svids {
		stableSVIDs = append(stableSVIDs, s.Serial)
	}
	svids := listAll("svids", func(token string) ([]string, string, error) {
		resp, err := c.admin.ListSVIDs(ctx, &adminv1.ListSVIDsRequest{PageSize: 2, PageToken: token})
		var ids []string
		for _, s := range resp.GetSvids() {
			ids = append(ids, s.Serial)
		}
		return ids, resp.GetNextPageToken(), err
	})
	check("svids", svids, stableSVIDs)
}

// TestListPagingRequests: a bad page size or token is refused with the
// field named; a page holds what was asked and says where the next starts.
func TestListPagingRequests(t *testing.T) {
	c := startCA(t, testOpts{noSync: true})
	ctx := context.Background()
	n := c.attest(t, "pager")
	createEntries(t, c, n.id.String(), "e", 5)
	tests := []struct {
		name      string
		req       *adminv1.ListEntriesRequest
		wantCount int
		wantNext  bool
		wantErr   string
	}{
		{name: "default page holds all", req: &adminv1.ListEntriesRequest{}, wantCount: 5},
		{name: "smaller page", req: &adminv1.ListEntriesRequest{PageSize: 2}, wantCount: 2, wantNext: true},
		{name: "exact page", req: &adminv1.ListEntriesRequest{PageSize: 5}, wantCount: 5},
		{name: "negative size", req: &adminv1.ListEntriesRequest{PageSize: -1}, wantErr: "page_size: must not be negative"},
		{name: "bad token", req: &adminv1.ListEntriesRequest{PageToken: "not a token!"}, wantErr: "page_token: not a token from this listing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := c.admin.ListEntries(ctx, tt.req)
			if tt.wantErr != "" {
				if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want InvalidArgument with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Entries) != tt.wantCount || (resp.NextPageToken != "") != tt.wantNext {
				t.Errorf("got %d entries, next page token %q; want %d entries, a next page %v", len(resp.Entries), resp.NextPageToken, tt.wantCount, tt.wantNext)
			}
		})
	}
}

// TestDeleteEntries: a bulk delete removes every listed entry with one
// audit record each, or, when any id is bad, nothing.
func TestDeleteEntries(t *testing.T) {
	c := startCA(t, testOpts{noSync: true})
	ctx := context.Background()
	n := c.attest(t, "bulk")
	ids := createEntries(t, c, n.id.String(), "bulk", 6)
	tests := []struct {
		name     string
		ids      []string
		wantCode codes.Code
		wantErr  string
	}{
		{name: "no ids", ids: nil, wantCode: codes.InvalidArgument, wantErr: "no entry ids"},
		{name: "unknown id", ids: []string{ids[0], "nope"}, wantCode: codes.NotFound, wantErr: `entry "nope" not found: nothing was deleted`},
		{name: "repeated id", ids: []string{ids[0], ids[0]}, wantCode: codes.InvalidArgument, wantErr: "listed twice"},
		{name: "empty id", ids: []string{ids[0], ""}, wantCode: codes.InvalidArgument, wantErr: "id 2 is empty"},
		{name: "too many", ids: make([]string, 10001), wantCode: codes.InvalidArgument, wantErr: "exceed the limit of 10000"},
		{name: "all of them", ids: ids[:4], wantCode: codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seq := auditHead(t, c)
			_, err := c.batch.DeleteEntries(ctx, &adminv1.DeleteEntriesRequest{Ids: tt.ids})
			if status.Code(err) != tt.wantCode || (tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("DeleteEntries = %v, want %v %q", err, tt.wantCode, tt.wantErr)
			}
			left, err := c.admin.ListEntries(ctx, &adminv1.ListEntriesRequest{ParentId: n.id.String()})
			if err != nil {
				t.Fatal(err)
			}
			records := auditSince(t, c, seq)
			wantLeft, wantRecords := len(ids), 0
			if tt.wantCode == codes.OK {
				wantLeft, wantRecords = len(ids)-len(tt.ids), len(tt.ids)
			}
			if len(left.Entries) != wantLeft || len(records) != wantRecords {
				t.Fatalf("%d entries left, %d audit records; want %d and %d", len(left.Entries), len(records), wantLeft, wantRecords)
			}
			for _, r := range records {
				if r.Type != audit.TypeEntryDeleted || r.Details[audit.DetailMethod] != "DeleteEntries" {
					t.Errorf("audit record %s %v, want %s by DeleteEntries", r.Type, r.Details, audit.TypeEntryDeleted)
				}
			}
		})
	}
}

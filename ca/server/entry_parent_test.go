package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

// TestCreateEntriesParent: an entry's parent must be an attested node or
// the node of an unused join token, looked up one by one; a call with one
// unknown parent creates none of its entries.
func TestCreateEntriesParent(t *testing.T) {
	c := startCA(t, testOpts{noSync: true})
	ctx := context.Background()
	attested := c.attest(t, "attested").id.String()
	_, pending := c.token(t, "pending", time.Hour)
	evicted := c.attest(t, "evicted").id.String()
	if _, err := c.admin.EvictNode(ctx, &adminv1.EvictNodeRequest{SpiffeId: evicted}); err != nil {
		t.Fatal(err)
	}
	unknown := "spiffe://example.org/signet/agent/join_token/nobody"

	tests := []struct {
		name    string
		parents []string
		wantErr string // substring; empty: created
	}{
		{name: "attested node", parents: []string{attested}},
		{name: "unused token's node", parents: []string{pending}},
		{name: "node and token in one call", parents: []string{attested, pending, attested}},
		{name: "unknown parent", parents: []string{unknown}, wantErr: `parent_id "` + unknown + `": no such agent`},
		{name: "evicted node", parents: []string{evicted}, wantErr: `parent_id "` + evicted + `": no such agent`},
		{name: "one unknown among known", parents: []string{attested, unknown}, wantErr: `entry 2: parent_id "` + unknown + `": no such agent`},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var in []*adminv1.Entry
			for j, p := range tt.parents {
				in = append(in, &adminv1.Entry{SpiffeId: "spiffe://example.org/parent-test/" + string(rune('a'+i)) + "/" + string(rune('a'+j)), ParentId: p, Selectors: []string{"unix:uid:1000"}})
			}
			before := countEntries(t, c)
			_, err := c.admin.CreateEntries(ctx, &adminv1.CreateEntriesRequest{Entries: in})
			after := countEntries(t, c)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("CreateEntries: %v", err)
				}
				if after != before+len(in) {
					t.Errorf("entries: %d before, %d after; want %d more", before, after, len(in))
				}
				return
			}
			if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("CreateEntries: %v; want FailedPrecondition with %q", err, tt.wantErr)
			}
			if after != before {
				t.Errorf("entries: %d before a refused call, %d after", before, after)
			}
		})
	}
}

func countEntries(t *testing.T, c *testCA) int {
	t.Helper()
	n, token := 0, ""
	for {
		resp, err := c.admin.ListEntries(context.Background(), &adminv1.ListEntriesRequest{PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		n += len(resp.GetEntries())
		if token = resp.GetNextPageToken(); token == "" {
			return n
		}
	}
}

package api

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

// TestSplitSync: an update is split into messages under the byte limit
// that, joined in order, give back the update; only the first carries
// full, the bundle, the policies and the federated bundles, and only the last has more unset.
func TestSplitSync(t *testing.T) {
	entry := func(i, idBytes int) *nodev1.Entry {
		return &nodev1.Entry{Id: fmt.Sprintf("e%05d", i), SpiffeId: "spiffe://example.org/" + strings.Repeat("a", idBytes), Revision: int64(i)}
	}
	tests := []struct {
		name     string
		entries  int
		idBytes  int
		deleted  int
		maxBytes int
		wantMsgs int
	}{
		{name: "small update stays whole", entries: 10, idBytes: 10, maxBytes: 1 << 20, wantMsgs: 1},
		{name: "entries split", entries: 100, idBytes: 1000, maxBytes: 10_000, wantMsgs: 12},
		{name: "entries and deletions split", entries: 50, idBytes: 1000, deleted: 5000, maxBytes: 10_000, wantMsgs: 13},
		{name: "an entry larger than the limit goes alone", entries: 3, idBytes: 5000, maxBytes: 1000, wantMsgs: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := &nodev1.SyncEntriesResponse{Full: true, Bundle: &nodev1.Bundle{TrustDomain: "example.org", Revision: 3},
				MtlsPolicies: &nodev1.MTLSPolicies{}, Revision: 42, RotateGeneration: 2,
				FederatedBundles: &nodev1.FederatedBundles{Bundles: []*nodev1.Bundle{{TrustDomain: "other.org", Revision: 7}}}}
			for i := range tt.entries {
				in.Entries = append(in.Entries, entry(i, tt.idBytes))
			}
			for i := range tt.deleted {
				in.DeletedEntryIds = append(in.DeletedEntryIds, fmt.Sprintf("d%05d", i))
			}
			want := proto.Clone(in).(*nodev1.SyncEntriesResponse)
			msgs := splitSync(in, tt.maxBytes)
			if len(msgs) != tt.wantMsgs {
				t.Fatalf("got %d messages, want %d", len(msgs), tt.wantMsgs)
			}
			joined := &nodev1.SyncEntriesResponse{}
			for i, m := range msgs {
				if size := proto.Size(m); size > tt.maxBytes && len(m.Entries)+len(m.DeletedEntryIds) > 1 {
					t.Errorf("message %d is %d bytes with several items, over the limit of %d", i, size, tt.maxBytes)
				}
				if m.More != (i < len(msgs)-1) {
					t.Errorf("message %d: more = %v", i, m.More)
				}
				if i > 0 && (m.Full || m.Bundle != nil || m.MtlsPolicies != nil || m.FederatedBundles != nil) {
					t.Errorf("message %d repeats full, the bundle, the policies or the federated bundles", i)
				}
				if m.Revision != 42 || m.RotateGeneration != 2 {
					t.Errorf("message %d: revision %d, rotate generation %d; want 42 and 2", i, m.Revision, m.RotateGeneration)
				}
				if i == 0 {
					joined.Full, joined.Bundle, joined.MtlsPolicies, joined.FederatedBundles = m.Full, m.Bundle, m.MtlsPolicies, m.FederatedBundles
				}
				joined.Entries = append(joined.Entries, m.Entries...)
				joined.DeletedEntryIds = append(joined.DeletedEntryIds, m.DeletedEntryIds...)
				joined.Revision, joined.RotateGeneration = m.Revision, m.RotateGeneration
			}
			if !proto.Equal(joined, want) {
				t.Error("the joined messages differ from the update")
			}
		})
	}
}

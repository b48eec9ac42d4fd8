package store

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestMakeChange: whom a commit concerns, and whether the streams it
// wakes must read their entries again, from what it wrote. Unknown kinds
// (a bare revision, an older replica's commit) mean anything changed.
func TestMakeChange(t *testing.T) {
	const n1, n2 = "spiffe://example.org/signet/agent/join_token/n1", "spiffe://example.org/signet/agent/join_token/n2"
	tests := []struct {
		name             string
		all              bool
		keys             []string
		kinds            ChangeKind
		want             Change
		entriesUnchanged bool
	}{
		{name: "entries", keys: []string{n2, n1, n2}, kinds: ChangeEntries, want: Change{Keys: []string{n1, n2}, Kinds: ChangeEntries}},
		{name: "a node", keys: []string{n1}, kinds: ChangeNodes, want: Change{Keys: []string{n1}, Kinds: ChangeNodes}},
		{name: "a node's status alone", kinds: ChangeNodeStatus, want: Change{Kinds: ChangeNodeStatus}, entriesUnchanged: true},
		{name: "the bundle", all: true, kinds: ChangeShared, want: Change{All: true, Kinds: ChangeShared}, entriesUnchanged: true},
		{name: "the bundle and a node's status", all: true, kinds: ChangeShared | ChangeNodeStatus, want: Change{All: true, Kinds: ChangeShared | ChangeNodeStatus}, entriesUnchanged: true},
		{name: "the bundle and an entry", all: true, keys: []string{n1}, kinds: ChangeShared | ChangeEntries, want: Change{All: true, Kinds: ChangeShared | ChangeEntries}},
		{name: "a bare revision", want: Change{All: true}},
		{name: "an older replica's commit for everyone", all: true, want: Change{All: true}},
		{name: "an older replica's commit for a node", keys: []string{n1}, want: Change{Keys: []string{n1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := MakeChange(tt.all, tt.keys, tt.kinds)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("MakeChange (-want +got):\n%s", diff)
			}
			if got.EntriesUnchanged() != tt.entriesUnchanged {
				t.Errorf("EntriesUnchanged() = %v, want %v", got.EntriesUnchanged(), tt.entriesUnchanged)
			}
		})
	}
}

package api

import (
	"google.golang.org/protobuf/proto"

	"github.com/signet-mesh/signet/internal/nodeapi"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

// syncFieldOverhead is what a repeated field adds around each element on
// the wire (tag and length), rounded up.
const syncFieldOverhead = 8

// splitSync splits one sync update into messages of at most maxBytes
// (nodeapi.MaxSyncMessageBytes by default), each but the last with
// more = true. The first message keeps full, the bundle, the mTLS
// policies and the federated bundles; every message carries the revision and the rotate generation.
// A single entry larger than maxBytes still goes alone in its message.
func splitSync(msg *nodev1.SyncEntriesResponse, maxBytes int) []*nodev1.SyncEntriesResponse {
	if maxBytes <= 0 {
		maxBytes = nodeapi.MaxSyncMessageBytes
	}
	if proto.Size(msg) <= maxBytes {
		return []*nodev1.SyncEntriesResponse{msg}
	}
	head := &nodev1.SyncEntriesResponse{
		Full: msg.GetFull(), Bundle: msg.GetBundle(), MtlsPolicies: msg.GetMtlsPolicies(),
		Revision: msg.GetRevision(), RotateGeneration: msg.GetRotateGeneration(), ReconnectSpreadMs: msg.GetReconnectSpreadMs(),
		RotateSpreadMs: msg.GetRotateSpreadMs(), FederatedBundles: msg.GetFederatedBundles(),
	}
	out := []*nodev1.SyncEntriesResponse{head}
	cur, size := head, proto.Size(head)
	next := func(n int) *nodev1.SyncEntriesResponse {
		if size+n > maxBytes && (len(cur.Entries) > 0 || len(cur.DeletedEntryIds) > 0) {
			cur = &nodev1.SyncEntriesResponse{Revision: msg.GetRevision(), RotateGeneration: msg.GetRotateGeneration(), ReconnectSpreadMs: msg.GetReconnectSpreadMs()}
			out = append(out, cur)
			size = proto.Size(cur)
		}
		size += n
		return cur
	}
	for _, e := range msg.GetEntries() {
		m := next(proto.Size(e) + syncFieldOverhead)
		m.Entries = append(m.Entries, e)
	}
	for _, id := range msg.GetDeletedEntryIds() {
		m := next(len(id) + syncFieldOverhead)
		m.DeletedEntryIds = append(m.DeletedEntryIds, id)
	}
	for _, m := range out[:len(out)-1] {
		m.More = true
	}
	return out
}

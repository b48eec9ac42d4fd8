package api

import (
	"sync"
	"sync/atomic"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-mesh/signet/ca/bundle"
	"github.com/signet-mesh/signet/ca/store"
	nodev1 "github.com/signet-mesh/signet/proto/signet/node/v1"
)

// syncBundle is the trust bundle in the form the entry sync sends it,
// built once per bundle revision and shared by every stream. A bundle
// change wakes every stream at once; each reading the authorities and
// parsing their certificates itself was a third of the server's CPU in a
// fan-out (profiled at 2,000 agents).
type syncBundle struct {
	mu  sync.Mutex
	rev int64
	msg *nodev1.Bundle // never modified once built: streams marshal it concurrently
	// builds counts the bundles built from the store (tests read it).
	builds atomic.Int64
}

// get returns the bundle of revision rev, which the caller read in tx.
// The first stream to ask for a revision builds it from tx while the
// others wait for it. A stream whose read is older than the shared bundle
// builds its own and leaves the newer one in place.
func (c *syncBundle) get(tx store.Tx, td spiffeid.TrustDomain, rev int64) (*nodev1.Bundle, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.msg != nil && c.rev == rev {
		return c.msg, nil
	}
	b, err := bundle.FromTx(tx, td)
	if err != nil {
		return nil, err
	}
	c.builds.Add(1)
	msg := bundleProto(b)
	if c.msg == nil || rev > c.rev {
		c.rev, c.msg = rev, msg
	}
	return msg, nil
}

// syncShared is what the entry sync streams share.
type syncShared struct {
	bundle  syncBundle
	sending atomic.Int64 // streams in a send
	// entryReads counts the reads of a node's entries by its stream: one
	// when it opens, one per change that may have changed them.
	entryReads atomic.Int64
	// rotateCheck is signsUnderActiveRoot's answer (node_rotate.go).
	rotateCheck rotateCheck
}

// SyncEntryReads is how many times a sync stream read its node's entries
// from the store: when it opened, and for each change that may have
// changed them (an entry, the node); a new bundle reaches every stream
// without one.
func (s *NodeService) SyncEntryReads() int64 { return s.syncShared.entryReads.Load() }

// SyncBundleBuilds is how many times the entry sync read the bundle from
// the store: once per bundle revision, however many streams send it.
func (s *NodeService) SyncBundleBuilds() int64 { return s.syncShared.bundle.builds.Load() }

// SyncSending is how many sync streams are sending an update: a stream
// whose agent does not read stays in its send, and holds up no other.
func (s *NodeService) SyncSending() int64 { return s.syncShared.sending.Load() }

// syncSend sends one update on a sync stream.
func (s *NodeService) syncSend(stream nodev1.NodeService_SyncEntriesServer, m *nodev1.SyncEntriesResponse) error {
	s.syncShared.sending.Add(1)
	defer s.syncShared.sending.Add(-1)
	return stream.Send(m)
}

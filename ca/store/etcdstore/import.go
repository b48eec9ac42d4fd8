package etcdstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/signet-mesh/signet/ca/store"
)

// ImportCounts is what Import copied.
type ImportCounts struct {
	Authorities, Entries, Nodes, Evicted, Tokens, MTLSPolicies, Meta int
	// CurrentSVIDs is the current SVID index, SVIDs the SVID index.
	CurrentSVIDs, SVIDs int
	// Audit is how many audit records were copied, the first being
	// AuditFirst (after 1 when the log was pruned); AuditHead is the head.
	Audit                 int
	AuditFirst, AuditHead uint64
	// Revision is the revision counter.
	Revision int64
}

// importChunk is how many SVID or audit records one transaction of Import
// carries. Each is one commit (chunked further by the store when it
// exceeds etcd's limits), so memory stays bounded however large the
// source.
const importChunk = 4096

// ErrNotEmpty is returned by Import when the store already holds state.
var ErrNotEmpty = errors.New("the etcd prefix already holds a store")

// Import copies src, the Bolt store of a stopped server, into s, which
// must be empty (else ErrNotEmpty): every record as stored, the revision
// counter, the current SVID index, and the audit log with its seqs and
// hashes, so that the chain goes on where it stopped. It reads src in one
// transaction and writes s in several: the small tables first, then the
// SVID index and the audit log in chunks. A failure leaves s part
// written; delete the prefix before trying again.
func (s *Store) Import(ctx context.Context, src *store.Bolt) (ImportCounts, error) {
	var n ImportCounts
	err := src.Export(ctx, func(c *store.Contents, stx store.Tx) error {
		first, err := firstAudit(stx)
		if err != nil {
			return err
		}
		n = ImportCounts{
			Authorities: len(c.Authorities), Entries: len(c.Entries), Nodes: len(c.Nodes),
			Evicted: len(c.Evicted), Tokens: len(c.Tokens), MTLSPolicies: len(c.MTLSPolicies),
			Meta: len(c.Meta), CurrentSVIDs: len(c.Current), Revision: c.Revision, AuditHead: c.AuditSeq,
		}
		if err := s.Update(ctx, func(tx store.Tx) error { return tx.(*etx).importContents(c, first) }); err != nil {
			return fmt.Errorf("copying the records: %w", err)
		}
		if n.SVIDs, err = importWalk(ctx, s, stx.ForEachSVID, (*etx).appendSVID); err != nil {
			return fmt.Errorf("copying the SVID index: %w", err)
		}
		forEachAudit := func(fn func(*store.AuditRecord) error) error { return stx.ForEachAudit(0, fn) }
		if n.Audit, err = importWalk(ctx, s, forEachAudit, (*etx).AppendAudit); err != nil {
			return fmt.Errorf("copying the audit log: %w", err)
		}
		if first != nil {
			n.AuditFirst = first.Seq
		}
		return s.View(ctx, func(tx store.Tx) error {
			seq, hash, err := tx.AuditHead()
			if err != nil {
				return err
			}
			if seq != c.AuditSeq || hash != c.AuditHash {
				return fmt.Errorf("the copied audit head is %d %.12s, the source's %d %.12s: %w", seq, hash, c.AuditSeq, c.AuditHash, store.ErrCorrupt)
			}
			return nil
		})
	})
	return n, err
}

// firstAudit returns the oldest audit record of tx, nil when there is none.
func firstAudit(tx store.Tx) (*store.AuditRecord, error) {
	var first *store.AuditRecord
	err := tx.ForEachAudit(0, func(r *store.AuditRecord) error {
		first = r
		return errStopWalk
	})
	if err != nil && !errors.Is(err, errStopWalk) {
		return nil, err
	}
	return first, nil
}

// importWalk writes what walk yields with put, importChunk records per
// transaction, and returns how many it wrote.
func importWalk[R any](ctx context.Context, s *Store, walk func(func(R) error) error, put func(*etx, R) error) (int, error) {
	var (
		batch []R
		n     int
	)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := s.Update(ctx, func(tx store.Tx) error {
			for _, r := range batch {
				if err := put(tx.(*etx), r); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		n += len(batch)
		batch = batch[:0]
		return nil
	}
	err := walk(func(r R) error {
		batch = append(batch, r)
		if len(batch) == importChunk {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	return n, err
}

// importContents writes c into an empty store and sets the counters; the
// audit head is set to where the first copied record (first) chains from,
// or to c's head when the log holds no record.
func (t *etx) importContents(c *store.Contents, first *store.AuditRecord) error {
	if t.rec.Revision != 0 || t.rec.SVIDSeq != 0 || t.rec.AuditSeq != 0 {
		return ErrNotEmpty
	}
	for _, tb := range t.snap.tables {
		if len(tb.items) != 0 {
			return ErrNotEmpty
		}
	}
	for _, a := range c.Authorities {
		if err := t.PutAuthority(a); err != nil {
			return err
		}
	}
	for _, e := range c.Entries {
		if err := t.CreateEntry(e); err != nil {
			return err
		}
	}
	for _, nd := range c.Nodes {
		if err := t.PutNode(nd); err != nil {
			return err
		}
	}
	for _, nd := range c.Evicted {
		if err := t.put(tEvicted, nd.SPIFFEID, nd); err != nil {
			return fmt.Errorf("putting evicted node %q: %w", nd.SPIFFEID, err)
		}
	}
	for _, jt := range c.Tokens {
		if err := t.put(tTokens, jt.Hash, jt); err != nil {
			return fmt.Errorf("putting join token %q: %w", jt.ID, err)
		}
	}
	for _, p := range c.MTLSPolicies {
		if err := t.PutMTLSPolicy(p); err != nil {
			return err
		}
	}
	for _, r := range c.Current {
		if err := t.put(tCurrent, currentID(r.EntryID, r.NodeID), r); err != nil {
			return fmt.Errorf("putting current svid %q: %w", r.Serial, err)
		}
	}
	for k, v := range c.Meta {
		if err := t.PutMeta(k, v); err != nil {
			return err
		}
	}
	t.rec.Revision = c.Revision
	t.revised = true
	if first != nil {
		t.rec.AuditSeq, t.rec.AuditHash = first.Seq-1, first.PrevHash
	} else {
		t.rec.AuditSeq, t.rec.AuditHash = c.AuditSeq, c.AuditHash
	}
	return nil
}

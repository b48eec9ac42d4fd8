package store

import (
	"bytes"
	"context"
	"fmt"
)

// Contents is a Bolt store's state apart from its two large tables, as
// stored: what a copy into another backend (signet store migrate) writes
// before it walks the SVID index and the audit log.
type Contents struct {
	Authorities  []*Authority
	Entries      []*Entry
	Nodes        []*Node
	Evicted      []*Node // eviction records, EvictedAt set
	Tokens       []*JoinToken
	MTLSPolicies []*MTLSPolicy
	// Current is the current SVID index (Tx.ForEachCurrentSVID), which a
	// replay of the SVID index would not always rebuild the same: it
	// keeps, of two SVIDs issued in the same second, the one recorded last.
	Current []*SVIDRecord
	// Meta is every meta key but the store's own (IsReservedMeta).
	Meta map[string][]byte
	// Revision is the revision counter (Tx.Revision).
	Revision int64
	// AuditSeq and AuditHash are the audit head (Tx.AuditHead).
	AuditSeq  uint64
	AuditHash string
}

// Export reads the store in one read transaction: fn gets its Contents,
// used join tokens included (Tx.ListJoinTokens leaves them out), and the
// transaction, to walk the SVID index and the audit log from the same
// instant.
func (b *Bolt) Export(ctx context.Context, fn func(c *Contents, tx Tx) error) error {
	return b.View(ctx, func(tx Tx) error {
		bt := tx.(*boltTx)
		c, err := bt.contents()
		if err != nil {
			return fmt.Errorf("exporting store: %w", err)
		}
		return fn(c, tx)
	})
}

func (t *boltTx) contents() (*Contents, error) {
	c := &Contents{Meta: map[string][]byte{}}
	var err error
	if c.Authorities, err = t.ListAuthorities(); err != nil {
		return nil, err
	}
	if c.Entries, err = t.ListEntries(EntryFilter{}); err != nil {
		return nil, err
	}
	if c.Nodes, err = t.ListNodes(); err != nil {
		return nil, err
	}
	if c.Evicted, err = t.ListEvictedNodes(); err != nil {
		return nil, err
	}
	if c.Tokens, err = list[JoinToken](t, bucketJoinTokens); err != nil {
		return nil, fmt.Errorf("listing join tokens: %w", err)
	}
	if c.MTLSPolicies, err = t.ListMTLSPolicies(); err != nil {
		return nil, err
	}
	if err := t.ForEachCurrentSVID(func(r *SVIDRecord) error {
		c.Current = append(c.Current, r)
		return nil
	}); err != nil {
		return nil, err
	}
	if err := t.tx.Bucket(bucketMeta).ForEach(func(k, v []byte) error {
		if !IsReservedMeta(string(k)) {
			c.Meta[string(k)] = bytes.Clone(v)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("listing meta: %w", err)
	}
	if c.Revision, err = t.Revision(); err != nil {
		return nil, err
	}
	if c.AuditSeq, c.AuditHash, err = t.AuditHead(); err != nil {
		return nil, err
	}
	return c, nil
}

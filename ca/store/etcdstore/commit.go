package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/signet-mesh/signet/ca/store"
)

// writeOp is one key a commit writes, with its value in the committed
// state the transaction started from (restored if a chunked commit is
// rolled back).
type writeOp struct {
	key string
	val []byte
	del bool
	pre preimage
}

func (o writeOp) size() int     { return len(o.key) + len(o.val) + opOverhead }
func (o writeOp) undoSize() int { return len(o.key) + len(o.pre.val) + 2*opOverhead }

func (o writeOp) op() clientv3.Op {
	if o.del {
		return clientv3.OpDelete(o.key)
	}
	return clientv3.OpPut(o.key, string(o.val))
}

func rangeOp(r keyRange) clientv3.Op {
	return clientv3.OpDelete(r.start, clientv3.WithRange(r.end))
}

func rangeSize(r keyRange) int { return len(r.start) + len(r.end) + opOverhead }

// writeOps lists the keys the transaction writes, in key order, and the
// ranges it deletes.
func (t *etx) writeOps() ([]writeOp, []keyRange) {
	var ops []writeOp
	for tb := range numTables {
		for id, it := range t.w[tb] {
			old := t.snap.tables[tb].items[id]
			if it == nil && old == nil {
				continue // deleting what is not there
			}
			o := writeOp{key: t.s.keys.record(table(tb), id), del: it == nil}
			if it != nil {
				o.val = it.raw
			}
			if old != nil {
				o.pre = preimage{val: old.raw, present: true}
			}
			ops = append(ops, o)
		}
	}
	big, ranges := t.bigOps()
	for _, o := range big {
		if !o.del || o.pre.present {
			ops = append(ops, o)
		}
	}
	slices.SortFunc(ops, func(a, b writeOp) int { return strings.Compare(a.key, b.key) })
	return ops, ranges
}

// fits reports whether the transaction, as buffered, commits in one Txn.
func (s *Store) fits(t *etx) bool {
	return t.nOps+1 <= s.maxOps && t.nBytes+commitOverhead <= s.maxBytes
}

// commitOverhead is about what the commit key, its record and the
// compare add to a Txn.
const commitOverhead = 512

// commit writes the transaction's buffer and returns the state it made.
// The write is one Txn conditional on the commit key's mod revision being
// the state's revision, or a chunked commit when it exceeds etcd's limits
// for one Txn. A *conflictError means another writer committed first.
func (s *Store) commit(ctx context.Context, t *etx) (*state, error) {
	ops, ranges := t.writeOps()
	rec := t.rec
	rec.Format, rec.Revised, rec.Audited, rec.Intent = formatVersion, t.revised, t.audited, nil
	rec.setChange(store.Change{})
	if t.revised {
		rec.setChange(t.change())
	}
	recBytes := encodeCommit(rec)
	size := commitOverhead + len(recBytes)
	for _, o := range ops {
		size += o.size()
	}
	for _, r := range ranges {
		size += rangeSize(r)
	}
	var (
		rev int64
		err error
	)
	if len(ops)+len(ranges)+1 <= s.maxOps && size <= s.maxBytes {
		then := make([]clientv3.Op, 0, len(ops)+len(ranges)+1)
		for _, r := range ranges {
			then = append(then, rangeOp(r))
		}
		for _, o := range ops {
			then = append(then, o.op())
		}
		then = append(then, clientv3.OpPut(s.keys.commit(), string(recBytes)))
		rev, err = s.txnOnCommit(ctx, t.snap.rev, then, "committing a transaction")
	} else {
		rev, err = s.commitChunked(ctx, t.snap, ops, ranges, recBytes)
	}
	if err != nil {
		return nil, err
	}
	return t.snap.with(rev, rec, &t.w), nil
}

// txnOnCommit runs then in one Txn if the commit key's mod revision is
// rev, and returns the Txn's revision; a *conflictError when it is not.
func (s *Store) txnOnCommit(ctx context.Context, rev int64, then []clientv3.Op, doing string) (int64, error) {
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	resp, err := s.cli.Txn(rctx).
		If(clientv3.Compare(clientv3.ModRevision(s.keys.commit()), "=", rev)).
		Then(then...).
		Else(clientv3.OpGet(s.keys.commit())).
		Commit()
	if err != nil {
		return 0, s.etcdErr(ctx, doing, err)
	}
	if !resp.Succeeded {
		rr := resp.Responses[0].GetResponseRange()
		if rr == nil || len(rr.Kvs) == 0 {
			return 0, fmt.Errorf("etcd: %s: the commit key %s is gone (was the prefix deleted?): %w", doing, s.keys.commit(), store.ErrCorrupt)
		}
		return 0, &conflictError{seen: rr.Kvs[0].ModRevision}
	}
	return resp.Header.Revision, nil
}

// planChunks splits ops into chunks that each fit in one Txn with their
// undo record, and the ops that go in the publishing Txn with the ranges,
// the removal of the undo records and the commit record.
func (s *Store) planChunks(ops []writeOp, ranges []keyRange, recLen int) (chunks [][]writeOp, publish []writeOp, err error) {
	fixedOps := len(ranges) + 2
	fixedBytes := commitOverhead + recLen + 2*len(s.keys.undoDir()) + opOverhead
	for _, r := range ranges {
		fixedBytes += rangeSize(r)
	}
	if fixedOps > s.maxOps || fixedBytes > s.maxBytes {
		return nil, nil, fmt.Errorf("etcd: the transaction deletes %d key ranges, more than one etcd request can carry", len(ranges))
	}
	undoFixed := len(s.keys.undo(0)) + 4*opOverhead
	var (
		cur      []writeOp
		curBytes = undoFixed
	)
	for _, o := range ops {
		sz := o.size() + o.undoSize()
		if undoFixed+sz > s.maxBytes {
			return nil, nil, fmt.Errorf("etcd: the record %s is %d bytes, more than one etcd request of at most %d bytes can carry", o.key, len(o.val), s.maxBytes)
		}
		if len(cur)+2 > s.maxOps || curBytes+sz > s.maxBytes {
			chunks = append(chunks, cur)
			cur, curBytes = nil, undoFixed
		}
		cur = append(cur, o)
		curBytes += sz
	}
	if len(cur) > 0 {
		chunks = append(chunks, cur)
	}
	// The last chunk goes in the publishing Txn when it fits there: it
	// needs no undo record.
	if n := len(chunks); n > 0 {
		last, b := chunks[n-1], fixedBytes
		for _, o := range last {
			b += o.size()
		}
		if fixedOps+len(last) <= s.maxOps && b <= s.maxBytes {
			publish, chunks = last, chunks[:n-1]
		}
	}
	return chunks, publish, nil
}

// commitChunked commits a transaction too large for one Txn:
//
//  1. put an intent on the commit key (compared with the state's
//     revision, like any commit), naming a lease kept alive meanwhile;
//  2. write each chunk in a Txn compared with the intent's revision,
//     together with an undo record of what the chunk overwrites;
//  3. publish: one Txn, compared likewise, that deletes the ranges,
//     writes the last ops, removes the undo records and puts the commit
//     record.
//
// Readers keep reading at the state's revision until step 3. When a step
// fails, the writer rolls its chunks back itself; when it dies, the next
// writer does once the lease has expired (waitWritable).
func (s *Store) commitChunked(ctx context.Context, snap *state, ops []writeOp, ranges []keyRange, rec []byte) (int64, error) {
	chunks, publish, err := s.planChunks(ops, ranges, len(rec))
	if err != nil {
		return 0, err
	}
	lease, stopLease, err := s.grantLease(ctx)
	if err != nil {
		return 0, err
	}
	base := snap.commit
	base.Format = formatVersion
	base.Intent = &intent{Base: snap.rev, Lease: int64(lease), Owner: s.name}
	intentRev, err := s.txnOnCommit(ctx, snap.rev, []clientv3.Op{clientv3.OpPut(s.keys.commit(), string(encodeCommit(base)))}, "starting a chunked commit")
	if err != nil {
		stopLease(true)
		return 0, err
	}
	s.log.Debug("writing a transaction in chunks", logKeyChunks, len(chunks)+1, logKeyRevision, intentRev)
	base.Intent = nil
	for i, ch := range chunks {
		undo := make([]undoEntry, len(ch))
		then := make([]clientv3.Op, 0, len(ch)+1)
		for j, o := range ch {
			undo[j] = undoEntry{key: o.key, pre: o.pre}
			then = append(then, o.op())
		}
		then = append(then, clientv3.OpPut(s.keys.undo(i), string(encodeUndo(undo))))
		if _, err := s.txnOnCommit(ctx, intentRev, then, fmt.Sprintf("writing chunk %d of %d", i+1, len(chunks)+1)); err != nil {
			return 0, s.abortChunked(intentRev, base, stopLease, err)
		}
		if h := s.hooks.afterChunk; h != nil {
			h(i)
		}
	}
	if h := s.hooks.beforePublish; h != nil {
		if err := h(); err != nil {
			if errors.Is(err, errTestCrash) {
				stopLease(false) // as if the process died: the lease runs out
				return 0, err
			}
			return 0, s.abortChunked(intentRev, base, stopLease, err)
		}
	}
	then := make([]clientv3.Op, 0, len(ranges)+len(publish)+2)
	for _, r := range ranges {
		then = append(then, rangeOp(r))
	}
	for _, o := range publish {
		then = append(then, o.op())
	}
	then = append(then,
		clientv3.OpDelete(s.keys.undoDir(), clientv3.WithPrefix()),
		clientv3.OpPut(s.keys.commit(), string(rec)))
	rev, err := s.txnOnCommit(ctx, intentRev, then, "publishing a chunked commit")
	if err != nil {
		return 0, s.abortChunked(intentRev, base, stopLease, err)
	}
	stopLease(true)
	return rev, nil
}

// abortChunked rolls back this writer's own chunked commit after cause
// made it fail, and returns cause. When another writer took the commit
// over (cause is a conflict), that writer rolls back.
func (s *Store) abortChunked(intentRev int64, base commitRecord, stopLease func(bool), cause error) error {
	defer stopLease(true)
	var ce *conflictError
	if errors.As(cause, &ce) {
		return cause
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.reqTimeout)
	defer cancel()
	if err := s.undoChunks(ctx, intentRev, base); err != nil && !errors.As(err, &ce) {
		s.log.Warn("rolling back a failed chunked commit; another writer will once its lease expires", logKeyError, err)
	}
	return cause
}

// rollback undoes the chunks of a writer whose lease has expired: it
// takes the intent over (so that the dead writer, should it come back,
// fails its next compare) and restores every key its chunks wrote.
// Another writer doing the same first is not an error.
func (s *Store) rollback(ctx context.Context, in *pendingIntent) error {
	lease, stopLease, err := s.grantLease(ctx)
	if err != nil {
		return err
	}
	defer stopLease(true)
	rec := in.rec
	rec.Intent = &intent{Base: in.rec.Intent.Base, Lease: int64(lease), Owner: s.name, Rollback: true}
	intentRev, err := s.txnOnCommit(ctx, in.modRev, []clientv3.Op{clientv3.OpPut(s.keys.commit(), string(encodeCommit(rec)))}, "taking over a dead writer's chunked commit")
	var ce *conflictError
	if errors.As(err, &ce) {
		return nil
	}
	if err != nil {
		return err
	}
	s.log.Warn("rolling back the chunked commit of a writer whose lease expired", logKeyOwner, in.rec.Intent.Owner, logKeyRevision, in.rec.Intent.Base)
	base := in.rec
	base.Intent = nil
	if err := s.undoChunks(ctx, intentRev, base); err != nil && !errors.As(err, &ce) {
		return err
	}
	return nil
}

// undoChunks restores every key the undo records name, then removes them
// and puts base (the committed state's record) back on the commit key,
// each step compared with intentRev.
func (s *Store) undoChunks(ctx context.Context, intentRev int64, base commitRecord) error {
	from, end := s.keys.undoDir(), prefixEnd(s.keys.undoDir())
	for {
		rctx, cancel := s.reqCtx(ctx)
		resp, err := s.cli.Get(rctx, from, clientv3.WithRange(end), clientv3.WithLimit(1))
		cancel()
		if err != nil {
			return s.etcdErr(ctx, "reading undo records", err)
		}
		if len(resp.Kvs) == 0 {
			break
		}
		kv := resp.Kvs[0]
		entries, err := decodeUndo(string(kv.Key), kv.Value)
		if err != nil {
			return err
		}
		then := make([]clientv3.Op, 0, len(entries))
		for _, e := range entries {
			if e.pre.present {
				then = append(then, clientv3.OpPut(e.key, string(e.pre.val)))
			} else {
				then = append(then, clientv3.OpDelete(e.key))
			}
		}
		if _, err := s.txnOnCommit(ctx, intentRev, then, "rolling back chunk "+string(kv.Key)); err != nil {
			return err
		}
		from = string(kv.Key) + "\x00"
	}
	base.Format, base.Revised, base.Audited, base.Intent = formatVersion, false, false, nil
	_, err := s.txnOnCommit(ctx, intentRev, []clientv3.Op{
		clientv3.OpDelete(s.keys.undoDir(), clientv3.WithPrefix()),
		clientv3.OpPut(s.keys.commit(), string(encodeCommit(base))),
	}, "finishing a rollback")
	return err
}

// grantLease grants a lease of IntentTTL kept alive until stop; stop(true)
// also revokes it.
func (s *Store) grantLease(ctx context.Context) (clientv3.LeaseID, func(revoke bool), error) {
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	ttl := max(int64(math.Ceil(s.intentTTL.Seconds())), 1)
	resp, err := s.cli.Grant(rctx, ttl)
	if err != nil {
		return 0, nil, s.etcdErr(ctx, "granting the lease of a chunked commit", err)
	}
	kctx, kcancel := context.WithCancel(s.ctx)
	ch, err := s.cli.KeepAlive(kctx, resp.ID)
	if err != nil {
		kcancel()
		return 0, nil, s.etcdErr(ctx, "keeping the lease of a chunked commit alive", err)
	}
	go func() {
		for range ch { // the client needs its answers read
		}
	}()
	stop := func(revoke bool) {
		kcancel()
		if revoke {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), s.reqTimeout)
			defer cancel()
			_, _ = s.cli.Revoke(rctx, resp.ID) // else it expires
		}
	}
	return resp.ID, stop, nil
}

// change is what the buffered writes concern (store.Change): the parents
// of the entries written, before and after, and the nodes written (a
// node whose status alone changed concerns nobody); any write to the
// authorities, the settings or the mTLS policies concerns everyone. Join
// tokens and the SVID and audit logs concern no stream.
func (t *etx) change() store.Change {
	var keys []string
	all := false
	var kinds store.ChangeKind
	for tb, m := range t.w {
		switch table(tb) {
		case tEntries:
			for id, it := range m {
				kinds |= store.ChangeEntries
				for _, e := range []*item{t.snap.tables[tEntries].items[id], it} {
					switch {
					case e == nil:
					case e.err != nil:
						all = true // whose it was cannot be told
					default:
						keys = append(keys, e.val.(*store.Entry).ParentID)
					}
				}
			}
		case tNodes:
			for id, it := range m {
				old := t.snap.tables[tNodes].items[id]
				if old != nil && it != nil && old.err == nil && it.err == nil &&
					store.NodeWriteKind(old.val.(*store.Node), it.val.(*store.Node)) == store.ChangeNodeStatus {
					kinds |= store.ChangeNodeStatus
					continue
				}
				kinds |= store.ChangeNodes
				keys = append(keys, id)
			}
		case tEvicted:
			for id := range m {
				kinds |= store.ChangeNodes
				keys = append(keys, id)
			}
		case tTokens, tCurrent:
		default:
			if len(m) > 0 {
				all = true
				kinds |= store.ChangeShared
			}
		}
	}
	return store.MakeChange(all, keys, kinds)
}

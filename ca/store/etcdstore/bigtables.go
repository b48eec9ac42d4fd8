package etcdstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/signet-mesh/signet/ca/store"
)

// The SVID index and the audit log: packs of records in etcd, read by
// range at the transaction's revision, with the transaction's own writes
// laid over them.

// pack is a buffered write of one pack key.
type pack struct {
	recs [][]byte // the records, in order
	size int      // about the bytes of the stored form
	del  bool     // the key is deleted
}

// keyRange is the range [start, end) of keys.
type keyRange struct{ start, end string }

func (r keyRange) contains(k string) bool { return k >= r.start && k < r.end }

// bigWrites is what a transaction wrote to the large tables.
type bigWrites struct {
	keys map[string]*pack
	// ranges are deleted first, then keys written: a key written after
	// its range was deleted is in keys.
	ranges []keyRange
	// pre are the values, at the read revision, of the keys in keys: what
	// a rollback of a chunked commit restores.
	pre map[string]preimage
	// The packs appends go to.
	openAudit string
	openSVID  map[int64]string
}

// deleted reports whether k, not in keys, is in a deleted range.
func (b *bigWrites) deleted(k string) bool {
	for _, r := range b.ranges {
		if r.contains(k) {
			return true
		}
	}
	return false
}

// scanPage is how many packs one range read returns.
const scanPage = 32

// rangeAt reads the keys in [from, end) at the transaction's read
// revision. When etcd has compacted that revision but the committed state
// has not changed since (the commit key still has the same mod revision),
// it reads at the newest revision instead, which holds the same state.
func (t *etx) rangeAt(from, end string, limit int64, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	for {
		ctx, cancel := t.s.reqCtx(t.ctx)
		o := append([]clientv3.OpOption{clientv3.WithRange(end), clientv3.WithRev(t.readRev), clientv3.WithLimit(limit)}, opts...)
		resp, err := t.s.cli.Get(ctx, from, o...)
		cancel()
		if err == nil {
			return resp, nil
		}
		if !isCompacted(err) {
			return nil, t.s.etcdErr(t.ctx, "reading "+from, err)
		}
		rev, err := t.s.sameStateRev(t.ctx, t.snap.rev)
		if err != nil {
			return nil, err
		}
		t.readRev = rev
	}
}

// scan calls fn for each pack with a key in [start, end), in key order,
// as the transaction sees them: raw is the stored value (nil for a pack
// the transaction wrote), recs its records. fn must not write the table.
func (t *etx) scan(start, end string, split func(string, []byte) ([][]byte, error), fn func(key string, raw []byte, recs [][]byte) error) error {
	var buffered []string
	for k := range t.big.keys {
		if k >= start && k < end {
			buffered = append(buffered, k)
		}
	}
	slices.Sort(buffered)
	emit := func(k string) error {
		if p := t.big.keys[k]; !p.del {
			return fn(k, nil, p.recs)
		}
		return nil
	}
	from := start
	for {
		resp, err := t.rangeAt(from, end, scanPage)
		if err != nil {
			return err
		}
		for _, kv := range resp.Kvs {
			k := string(kv.Key)
			for len(buffered) > 0 && buffered[0] < k {
				if err := emit(buffered[0]); err != nil {
					return err
				}
				buffered = buffered[1:]
			}
			if len(buffered) > 0 && buffered[0] == k {
				if err := emit(k); err != nil {
					return err
				}
				buffered = buffered[1:]
				continue
			}
			if t.big.deleted(k) {
				continue
			}
			recs, err := split(k, kv.Value)
			if err != nil {
				return err
			}
			if err := fn(k, kv.Value, recs); err != nil {
				return err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	for _, k := range buffered {
		if err := emit(k); err != nil {
			return err
		}
	}
	return nil
}

// newPack buffers a new, empty pack under key (absent at the read
// revision) and returns it.
func (t *etx) newPack(key string) *pack {
	p := &pack{}
	t.setPack(key, p, preimage{})
	return p
}

// setPack buffers p as the new value of key; pre is its value at the read
// revision, kept from the first write of the key.
func (t *etx) setPack(key string, p *pack, pre preimage) {
	if old, had := t.big.keys[key]; had {
		t.nBytes -= len(key) + old.size + opOverhead
	} else {
		t.nOps++
	}
	t.nBytes += len(key) + p.size + opOverhead
	setJ(t, t.big.keys, key, p)
	if _, ok := t.big.pre[key]; !ok {
		setJ(t, t.big.pre, key, pre)
	}
}

// appendRec appends rec to the buffered pack p.
func (t *etx) appendRec(p *pack, rec []byte) {
	n, size := len(p.recs), p.size
	t.journal = append(t.journal, func() { p.recs, p.size = p.recs[:n], size })
	p.recs = append(p.recs, rec)
	grow := len(rec) + 3 // a newline, or a length of up to 3 bytes
	p.size += grow
	t.nBytes += grow
}

// deleteRange buffers the delete of every pack in r, including those the
// transaction wrote before.
func (t *etx) deleteRange(r keyRange) {
	for k, p := range t.big.keys {
		if r.contains(k) {
			t.nOps--
			t.nBytes -= len(k) + p.size + opOverhead
			deleteJ(t, t.big.keys, k)
		}
	}
	t.big.ranges = append(t.big.ranges, r)
	t.nOps++
	t.nBytes += len(r.start) + len(r.end) + opOverhead
}

func (t *etx) PutSVID(r *store.SVIDRecord) error {
	if err := t.checkWritable(); err != nil {
		return fmt.Errorf("putting svid %q: %w", r.Serial, err)
	}
	if err := t.appendSVID(r); err != nil {
		return err
	}
	return t.setCurrent(r)
}

// appendSVID adds r to the SVID index, not to the current index.
func (t *etx) appendSVID(r *store.SVIDRecord) error {
	rec, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("putting svid %q: encoding record: %w", r.Serial, err)
	}
	sec := r.NotAfter.Unix()
	key, ok := t.big.openSVID[sec]
	p := t.big.keys[key]
	if !ok || p == nil || p.del || p.size+len(rec) > maxPackBytes {
		t.rec.SVIDSeq++
		key = t.s.keys.svidPack(sec, t.rec.SVIDSeq)
		p = t.newPack(key)
		setJ(t, t.big.openSVID, sec, key)
	}
	t.appendRec(p, rec)
	return nil
}

// setCurrent makes r the current SVID of its entry and node unless the
// current one was issued later (a later NotBefore); of two issued at the
// same time, the one recorded last wins. The current index is a mirrored
// table: one record per entry and node.
func (t *etx) setCurrent(r *store.SVIDRecord) error {
	id := currentID(r.EntryID, r.NodeID)
	if old := t.lookup(tCurrent, id); old != nil && old.err == nil && r.NotBefore.Before(old.val.(*store.SVIDRecord).NotBefore) {
		return nil
	}
	return t.put(tCurrent, id, r)
}

func (t *etx) ForEachCurrentSVID(fn func(*store.SVIDRecord) error) error {
	for _, id := range t.ids(tCurrent) {
		it := t.lookup(tCurrent, id)
		if it.err != nil {
			return fmt.Errorf("walking current svids: %w", it.err)
		}
		if err := fn(cloneSVID(it.val.(*store.SVIDRecord))); err != nil {
			return err
		}
	}
	return nil
}

// pruneCurrent drops the current SVIDs that expired before t.
func (t *etx) pruneCurrent(before time.Time) error {
	for _, id := range t.ids(tCurrent) {
		it := t.lookup(tCurrent, id)
		if it.err != nil {
			return it.err
		}
		if it.val.(*store.SVIDRecord).NotAfter.Before(before) {
			t.setItem(tCurrent, id, nil)
		}
	}
	return nil
}

// GetSVID walks the index, as Bolt's does: it is kept in expiry order for
// issuance and pruning, and lookups by serial are an operator's question.
func (t *etx) GetSVID(serial string) (*store.SVIDRecord, error) {
	var found *store.SVIDRecord
	err := t.ForEachSVID(func(r *store.SVIDRecord) error {
		if r.Serial == serial {
			found = r
			return errStopWalk
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStopWalk) {
		return nil, fmt.Errorf("getting svid %q: %w", serial, err)
	}
	if found == nil {
		return nil, fmt.Errorf("getting svid %q: %w", serial, store.ErrNotFound)
	}
	return found, nil
}

var errStopWalk = errors.New("stop walk")

func (t *etx) ForEachSVID(fn func(*store.SVIDRecord) error) error {
	return t.forEachSVID(t.s.keys.svidDir(), fn)
}

func (t *etx) ForEachSVIDFrom(from time.Time, fn func(*store.SVIDRecord) error) error {
	return t.forEachSVID(t.s.keys.svidSecond(from.Unix()), fn)
}

// forEachSVID walks the SVID packs from key start on.
func (t *etx) forEachSVID(start string, fn func(*store.SVIDRecord) error) error {
	dir := t.s.keys.svidDir()
	var fnErr error
	err := t.scan(start, prefixEnd(dir), splitSVIDPack, func(key string, _ []byte, recs [][]byte) error {
		for _, rec := range recs {
			r, err := decodeSVID(key, rec)
			if err != nil {
				return err
			}
			if fnErr = fn(r); fnErr != nil {
				return fnErr
			}
		}
		return nil
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return fmt.Errorf("walking svids: %w", err)
	}
	return nil
}

func (t *etx) PruneSVIDs(before time.Time) (int, error) {
	if err := t.checkWritable(); err != nil {
		return 0, fmt.Errorf("pruning svids: %w", err)
	}
	n, err := t.pruneSVIDs(before)
	if err != nil {
		return 0, fmt.Errorf("pruning svids: %w", err)
	}
	if err := t.pruneCurrent(before); err != nil {
		return 0, fmt.Errorf("pruning svids: %w", err)
	}
	return n, nil
}

func (t *etx) pruneSVIDs(before time.Time) (int, error) {
	sec := before.Unix()
	if sec < 0 {
		return 0, nil
	}
	dir := t.s.keys.svidDir()
	// Every record of a pack keyed by an earlier second has expired.
	cut := t.s.keys.svidSecond(sec)
	n := 0
	err := t.scan(dir, cut, splitSVIDPack, func(_ string, _ []byte, recs [][]byte) error {
		n += len(recs)
		return nil
	})
	if err != nil {
		return 0, err
	}
	// The packs of that second expire partly before it.
	type rewrite struct {
		key  string
		raw  []byte
		keep [][]byte
	}
	var rewrites []rewrite
	err = t.scan(cut, t.s.keys.svidSecond(sec+1), splitSVIDPack, func(key string, raw []byte, recs [][]byte) error {
		var keep [][]byte
		for _, rec := range recs {
			r, err := decodeSVID(key, rec)
			if err != nil {
				return err
			}
			if !r.NotAfter.Before(before) {
				keep = append(keep, rec)
			}
		}
		if len(keep) < len(recs) {
			n += len(recs) - len(keep)
			rewrites = append(rewrites, rewrite{key: key, raw: raw, keep: keep})
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if n > 0 {
		t.deleteRange(keyRange{start: dir, end: cut})
	}
	for _, rw := range rewrites {
		t.rewritePack(rw.key, rw.raw, rw.keep, joinSVIDPack)
	}
	return n, nil
}

// rewritePack buffers the records keep as the new value of key (deleting
// it when there are none). raw is its stored value (nil when the
// transaction wrote it).
func (t *etx) rewritePack(key string, raw []byte, keep [][]byte, join func([][]byte) []byte) {
	p := &pack{recs: keep, del: len(keep) == 0}
	if !p.del {
		p.size = len(join(keep))
	}
	t.setPack(key, p, preimage{val: raw, present: raw != nil})
}

func (t *etx) AuditHead() (uint64, string, error) {
	return t.rec.AuditSeq, t.rec.AuditHash, nil
}

func (t *etx) AppendAudit(r *store.AuditRecord) error {
	if err := t.appendAudit(r); err != nil {
		return fmt.Errorf("appending audit record %d: %w", r.Seq, err)
	}
	return nil
}

func (t *etx) appendAudit(r *store.AuditRecord) error {
	if err := t.checkWritable(); err != nil {
		return err
	}
	seq, hash := t.rec.AuditSeq, t.rec.AuditHash
	if r.Seq != seq+1 {
		return fmt.Errorf("the head is record %d: %w", seq, store.ErrConflict)
	}
	if seq > 0 && r.PrevHash != hash {
		return fmt.Errorf("prev hash %q is not the hash of record %d: %w", r.PrevHash, seq, store.ErrConflict)
	}
	data := store.MarshalAudit(r)
	key := t.big.openAudit
	p := t.big.keys[key]
	if key == "" || p == nil || p.del || p.size+len(data) > maxPackBytes {
		key = t.s.keys.auditPack(r.Seq)
		p = t.newPack(key)
		t.big.openAudit = key
	}
	t.appendRec(p, data)
	t.rec.AuditSeq, t.rec.AuditHash = r.Seq, r.Hash
	t.audited = true
	return nil
}

// auditStart returns the key of the pack that holds record seq (or would:
// the newest pack keyed at or before it), where a walk from seq starts.
func (t *etx) auditStart(seq uint64) (string, error) {
	dir := t.s.keys.auditDir()
	k := t.s.keys.auditPack(seq)
	best := ""
	for key, p := range t.big.keys {
		if strings.HasPrefix(key, dir) && key <= k && !p.del && key > best {
			best = key
		}
	}
	end := k + "\x00"
	for {
		resp, err := t.rangeAt(dir, end, 1, clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend))
		if err != nil {
			return "", err
		}
		if len(resp.Kvs) == 0 {
			break
		}
		key := string(resp.Kvs[0].Key)
		if p, ok := t.big.keys[key]; ok && p.del {
			end = key
			continue
		} else if ok {
			break // written by the transaction: best has it
		}
		if r := t.big.rangeOf(key); r != nil {
			end = r.start
			continue
		}
		best = max(best, key)
		break
	}
	if best == "" {
		return k, nil
	}
	return best, nil
}

// rangeOf returns the deleted range holding k, nil if none.
func (b *bigWrites) rangeOf(k string) *keyRange {
	for i := range b.ranges {
		if b.ranges[i].contains(k) {
			return &b.ranges[i]
		}
	}
	return nil
}

func (t *etx) ForEachAudit(fromSeq uint64, fn func(*store.AuditRecord) error) error {
	start, err := t.auditStart(fromSeq)
	if err != nil {
		return fmt.Errorf("walking the audit log: %w", err)
	}
	var fnErr error
	dir := t.s.keys.auditDir()
	err = t.scan(start, prefixEnd(dir), splitAuditPack, func(key string, _ []byte, recs [][]byte) error {
		first, ok := t.s.keys.parseAuditPack(key)
		if !ok {
			return fmt.Errorf("audit pack key %q: %w", key, store.ErrCorrupt)
		}
		for i, rec := range recs {
			seq := first + uint64(i)
			if seq < fromSeq {
				continue
			}
			r, err := store.UnmarshalAudit(rec)
			if err != nil {
				return fmt.Errorf("audit record %d in pack %q: %w", seq, key, err)
			}
			if r.Seq != seq {
				return fmt.Errorf("audit pack %q holds record %d where %d belongs: %w", key, r.Seq, seq, store.ErrCorrupt)
			}
			if fnErr = fn(r); fnErr != nil {
				return fnErr
			}
		}
		return nil
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return fmt.Errorf("walking the audit log: %w", err)
	}
	return nil
}

func (t *etx) DeleteAuditBefore(seq uint64) (int, error) {
	if err := t.checkWritable(); err != nil {
		return 0, fmt.Errorf("deleting audit records before %d: %w", seq, err)
	}
	n, err := t.deleteAuditBefore(seq)
	if err != nil {
		return 0, fmt.Errorf("deleting audit records before %d: %w", seq, err)
	}
	return n, nil
}

func (t *etx) deleteAuditBefore(seq uint64) (int, error) {
	dir := t.s.keys.auditDir()
	end := t.s.keys.auditPack(seq)
	n := 0
	var rest [][]byte // the records from seq on of the pack that holds seq
	err := t.scan(dir, end, splitAuditPack, func(key string, _ []byte, recs [][]byte) error {
		first, ok := t.s.keys.parseAuditPack(key)
		if !ok {
			return fmt.Errorf("audit pack key %q: %w", key, store.ErrCorrupt)
		}
		if below := seq - first; below < uint64(len(recs)) {
			n += int(below)
			rest = recs[below:]
			return nil
		}
		n += len(recs)
		return nil
	})
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, nil
	}
	t.deleteRange(keyRange{start: dir, end: end})
	if rest != nil {
		p := &pack{recs: rest, size: len(joinAuditPack(rest))}
		t.setPack(end, p, preimage{})
		if t.big.openAudit != "" {
			if _, ok := t.big.keys[t.big.openAudit]; !ok {
				t.big.openAudit = ""
			}
		}
	}
	return n, nil
}

// bigOps are the etcd operations of the transaction's writes to the large
// tables, with the keys they put (for splitting the ranges).
func (t *etx) bigOps() (ops []writeOp, ranges []keyRange) {
	var puts []string
	for k, p := range t.big.keys {
		w := writeOp{key: k, del: p.del, pre: t.big.pre[k]}
		if !p.del {
			if strings.HasPrefix(k, t.s.keys.auditDir()) {
				w.val = joinAuditPack(p.recs)
			} else {
				w.val = joinSVIDPack(p.recs)
			}
			puts = append(puts, k)
		}
		ops = append(ops, w)
	}
	slices.Sort(puts)
	for _, r := range t.big.ranges {
		ranges = append(ranges, splitRange(r, puts)...)
	}
	return ops, ranges
}

// splitRange cuts the keys of puts (sorted) out of r: etcd refuses a Txn
// that puts a key inside a range it deletes.
func splitRange(r keyRange, puts []string) []keyRange {
	var out []keyRange
	start := r.start
	for _, k := range puts {
		if k < start || k >= r.end {
			continue
		}
		if start < k {
			out = append(out, keyRange{start: start, end: k})
		}
		start = k + "\x00"
	}
	if start < r.end {
		out = append(out, keyRange{start: start, end: r.end})
	}
	return out
}

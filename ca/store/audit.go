package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// auditFillPercent packs the audit bucket's pages full. Records are only
// ever appended at the end of the key space, so bbolt's default of half
// full pages (room for inserts in the middle) would double the file for
// nothing.
const auditFillPercent = 1.0

// auditKey is the key of the record with that seq: big-endian, so that
// bbolt's byte order is seq order.
func auditKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, seq)
}

// auditKeyName is how errors name an audit key.
func auditKeyName(k []byte) []byte {
	if len(k) != 8 {
		return k
	}
	return strconv.AppendUint(nil, binary.BigEndian.Uint64(k), 10)
}

func encodeAuditHead(seq uint64, hash string) []byte {
	return append(encodeUint64(seq), hash...)
}

// decodeAuditHead reads metaAuditHead; an absent key is the empty log.
func decodeAuditHead(b []byte) (uint64, string, error) {
	if b == nil {
		return 0, "", nil
	}
	if len(b) < 8 {
		return 0, "", fmt.Errorf("%d-byte audit head, want at least 8: %w", len(b), ErrCorrupt)
	}
	return binary.BigEndian.Uint64(b), string(b[8:]), nil
}

func (t *boltTx) AuditHead() (uint64, string, error) {
	seq, hash, err := decodeAuditHead(t.tx.Bucket(bucketMeta).Get([]byte(metaAuditHead)))
	if err != nil {
		return 0, "", fmt.Errorf("reading audit head: %w", err)
	}
	return seq, hash, nil
}

func (t *boltTx) AppendAudit(r *AuditRecord) error {
	if err := t.appendAudit(r); err != nil {
		return fmt.Errorf("appending audit record %d: %w", r.Seq, err)
	}
	return nil
}

func (t *boltTx) appendAudit(r *AuditRecord) error {
	if err := t.writable(); err != nil {
		return err
	}
	seq, hash, err := t.AuditHead()
	if err != nil {
		return err
	}
	if r.Seq != seq+1 {
		return fmt.Errorf("the head is record %d: %w", seq, ErrConflict)
	}
	if seq > 0 && r.PrevHash != hash {
		return fmt.Errorf("prev hash %q is not the hash of record %d: %w", r.PrevHash, seq, ErrConflict)
	}
	data := encodeAudit(r)
	b := t.tx.Bucket(bucketAudit)
	b.FillPercent = auditFillPercent
	if err := b.Put(auditKey(r.Seq), data); err != nil {
		return err
	}
	if err := t.tx.Bucket(bucketMeta).Put([]byte(metaAuditHead), encodeAuditHead(r.Seq, r.Hash)); err != nil {
		return fmt.Errorf("moving the audit head: %w", err)
	}
	t.audited = true
	return nil
}

func (t *boltTx) ForEachAudit(fromSeq uint64, fn func(*AuditRecord) error) error {
	c := t.tx.Bucket(bucketAudit).Cursor()
	// Long walks (exports) give the mapped pages back as they go, so the
	// CA's memory does not grow with the log.
	const releaseEvery = 4096
	n := 0
	defer func() {
		if n >= releaseEvery/8 { // a chunk of an export, not a peek at the head
			releasePages(t.tx)
		}
	}()
	for k, data := c.Seek(auditKey(fromSeq)); k != nil; k, data = c.Next() {
		r, err := decodeAudit(k, data)
		if err != nil {
			return fmt.Errorf("walking the audit log: %w", err)
		}
		if err := fn(r); err != nil {
			return err
		}
		if n++; n%releaseEvery == 0 {
			releasePages(t.tx)
		}
	}
	return nil
}

// auditEncodingV1 is the first byte of an audit record as stored.
//
// Audit records are not JSON like the other records: an export of a
// million of them must read in seconds and the log is the store's largest
// bucket. The binary form decodes about five times faster and is a fifth
// smaller. After the version byte come, in this order: uvarint Seq, varint
// Unix seconds and uvarint nanoseconds of Time (UTC), the strings Type,
// Outcome, Actor, Subject, a uvarint count of Details and that many key
// and value strings in key order, then KeyID, Signature, PrevHash, Hash.
// A string is its uvarint byte length and its bytes.
const auditEncodingV1 = 1

// encodeAudit is the form Bolt stores records in: auditEncodingV2.
func encodeAudit(r *AuditRecord) []byte { return encodeAuditAs(r, auditEncodingV2) }

// encodeAuditAs encodes r in version v of the binary form.
func encodeAuditAs(r *AuditRecord, v byte) []byte {
	appendString := appendAuditString
	if v == auditEncodingV2 {
		appendString = appendAuditStringV2
	}
	// At most the size of version 1, give or take the varints: one
	// allocation.
	n := 1 + 4*binary.MaxVarintLen64
	for _, s := range [...]string{r.Type, r.Outcome, r.Actor, r.Subject, r.KeyID, r.Signature, r.PrevHash, r.Hash} {
		n += binary.MaxVarintLen32 + len(s)
	}
	for k, v := range r.Details {
		n += 2*binary.MaxVarintLen32 + len(k) + len(v)
	}
	b := make([]byte, 0, n)
	b = append(b, v)
	b = binary.AppendUvarint(b, r.Seq)
	b = binary.AppendVarint(b, r.Time.Unix())
	b = binary.AppendUvarint(b, uint64(r.Time.Nanosecond()))
	for _, s := range [...]string{r.Type, r.Outcome, r.Actor, r.Subject} {
		b = appendString(b, s)
	}
	b = binary.AppendUvarint(b, uint64(len(r.Details)))
	keys := make([]string, 0, len(r.Details))
	for k := range r.Details {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b = appendString(b, k)
		b = appendString(b, r.Details[k])
	}
	for _, s := range [...]string{r.KeyID, r.Signature, r.PrevHash, r.Hash} {
		b = appendString(b, s)
	}
	return b
}

func appendAuditString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decodeAudit decodes the record stored under k, checking that it is
// stored under its own seq. Anything but a record encodeAudit wrote is
// ErrCorrupt.
func decodeAudit(k, data []byte) (*AuditRecord, error) {
	name := auditKeyName(k)
	r, ok := decodeAuditValue(data)
	if !ok {
		return nil, fmt.Errorf("decoding %s record %q: %w", bucketAudit, name, ErrCorrupt)
	}
	if len(k) != 8 || binary.BigEndian.Uint64(k) != r.Seq {
		return nil, fmt.Errorf("decoding %s record %q: it has seq %d: %w", bucketAudit, name, r.Seq, ErrCorrupt)
	}
	return r, nil
}

func decodeAuditValue(data []byte) (*AuditRecord, bool) {
	if len(data) == 0 || (data[0] != auditEncodingV1 && data[0] != auditEncodingV2) {
		return nil, false
	}
	// One copy of the value, which every string of the record shares.
	d := auditDecoder{s: string(data[1:]), packedHex: data[0] == auditEncodingV2}
	r := &AuditRecord{Seq: d.uvarint()}
	sec, nsec := d.varint(), d.uvarint()
	if nsec >= uint64(time.Second) {
		return nil, false
	}
	r.Time = time.Unix(sec, int64(nsec)).UTC()
	r.Type, r.Outcome, r.Actor, r.Subject = d.str(), d.str(), d.str(), d.str()
	// Each detail takes at least two bytes: a larger count is corrupt,
	// and must not size the map.
	n := d.uvarint()
	if n > uint64(len(d.s))/2 {
		return nil, false
	}
	if n > 0 {
		r.Details = make(map[string]string, n)
		prev := ""
		for i := range n {
			k, v := d.str(), d.str()
			if i > 0 && k <= prev {
				return nil, false // out of order or repeated
			}
			r.Details[k], prev = v, k
		}
	}
	r.KeyID, r.Signature, r.PrevHash, r.Hash = d.str(), d.str(), d.str(), d.str()
	if d.bad || d.s != "" {
		return nil, false
	}
	return r, true
}

// auditDecoder reads the fields of an encoded audit record. A read past
// the end or a bad varint sets bad, and later reads return zero values.
type auditDecoder struct {
	s   string
	bad bool
	// packedHex: strings are in auditEncodingV2's form.
	packedHex bool
}

func (d *auditDecoder) uvarint() uint64 {
	var x uint64
	for i := 0; i < len(d.s) && i < binary.MaxVarintLen64; i++ {
		c := d.s[i]
		if i == binary.MaxVarintLen64-1 && c > 1 {
			break // overflows 64 bits
		}
		if c < 0x80 {
			d.s = d.s[i+1:]
			return x | uint64(c)<<(7*i)
		}
		x |= uint64(c&0x7f) << (7 * i)
	}
	d.bad, d.s = true, ""
	return 0
}

func (d *auditDecoder) varint() int64 {
	ux := d.uvarint()
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x
}

func (d *auditDecoder) str() string {
	if d.packedHex {
		return d.strV2()
	}
	n := d.uvarint()
	if n > uint64(len(d.s)) {
		d.bad, d.s = true, ""
		return ""
	}
	s := d.s[:n]
	d.s = d.s[n:]
	return s
}

func (t *boltTx) DeleteAuditBefore(seq uint64) (int, error) {
	if err := t.writable(); err != nil {
		return 0, fmt.Errorf("deleting audit records before %d: %w", seq, err)
	}
	end := auditKey(seq)
	c := t.tx.Bucket(bucketAudit).Cursor()
	n := 0
	// Delete from the front, restarting at First each time: deleting
	// under a cursor that moves on with Next can skip keys in bbolt.
	for k, _ := c.First(); k != nil && bytes.Compare(k, end) < 0; k, _ = c.First() {
		if err := c.Delete(); err != nil {
			return n, fmt.Errorf("deleting audit record %s: %w", auditKeyName(k), err)
		}
		n++
	}
	return n, nil
}

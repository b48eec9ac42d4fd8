package etcdstore

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/signet-mesh/signet/ca/store"
)

// formatVersion is the layout this code reads and writes, kept in the
// commit record. A newer layout is refused, as Bolt refuses a newer schema.
const formatVersion = 1

// commitRecord is the value of the commit key. The key's mod revision is
// the revision of the committed state; the record holds the counters every
// commit may move, so that moving them costs no extra key.
type commitRecord struct {
	Format int `json:"format"`
	// Revision is the store's revision counter (Tx.NextRevision).
	Revision int64 `json:"revision"`
	// SVIDSeq numbers SVID packs, so that packs of one expiry second sort
	// in order of issuance.
	SVIDSeq uint64 `json:"svid_seq"`
	// AuditSeq and AuditHash are the audit head.
	AuditSeq  uint64 `json:"audit_seq"`
	AuditHash string `json:"audit_hash,omitempty"`
	// Revised and Audited say what the commit that wrote the record did,
	// so that the watch of every instance wakes Subscribe and
	// SubscribeAudit only for their kind.
	Revised bool `json:"revised,omitempty"`
	Audited bool `json:"audited,omitempty"`
	// ChangeAll and ChangeKeys are the store.Change of a revised commit
	// (ChangeKeys joined by newlines, so that the record stays
	// comparable): every instance tells its streams whom it concerns.
	// A record without either (an older instance's) concerns everyone.
	ChangeAll  bool   `json:"change_all,omitempty"`
	ChangeKeys string `json:"change_keys,omitempty"`
	// ChangeKinds is the store.ChangeKind of the change; absent (zero)
	// in the records of older versions: any kind may have changed.
	ChangeKinds store.ChangeKind `json:"change_kinds,omitempty"`
	// Intent is set while a chunked commit (or the rollback of one) is in
	// flight; the other fields are then those of the committed state it
	// started from.
	Intent *intent `json:"intent,omitempty"`
}

// intent marks the commit key while one writer writes a transaction too
// large for one etcd Txn (see doc.go).
type intent struct {
	// Base is the revision of the committed state the writer started
	// from: readers keep reading at it.
	Base int64 `json:"base"`
	// Lease is the writer's lease; when it has expired the writer is dead
	// and the next writer rolls its chunks back.
	Lease int64 `json:"lease"`
	// Owner names the writer for an operator (Options.Name).
	Owner string `json:"owner"`
	// Rollback is set when the writer is undoing another's chunks.
	Rollback bool `json:"rollback,omitempty"`
}

// maxChangeKeyBytes bounds the keys a commit record names; a change that
// touches more concerns everyone.
const maxChangeKeyBytes = 16 << 10

// change is the store.Change the record publishes.
func (r commitRecord) change() store.Change {
	var keys []string
	if r.ChangeKeys != "" {
		keys = strings.Split(r.ChangeKeys, "\n")
	}
	return store.MakeChange(r.ChangeAll, keys, r.ChangeKinds)
}

// setChange records c in r.
func (r *commitRecord) setChange(c store.Change) {
	r.ChangeAll, r.ChangeKeys, r.ChangeKinds = c.All, strings.Join(c.Keys, "\n"), c.Kinds
	if len(r.ChangeKeys) > maxChangeKeyBytes {
		r.ChangeAll, r.ChangeKeys = true, ""
	}
}

func encodeCommit(r commitRecord) []byte {
	data, _ := json.Marshal(r) // plain fields always encode
	return data
}

func decodeCommit(data []byte) (commitRecord, error) {
	var r commitRecord
	if err := json.Unmarshal(data, &r); err != nil {
		return commitRecord{}, fmt.Errorf("decoding the commit record: %w: %v", store.ErrCorrupt, err)
	}
	if r.Format > formatVersion {
		return commitRecord{}, fmt.Errorf("store layout version %d is newer than version %d, the newest this signet supports: use a newer signet", r.Format, formatVersion)
	}
	return r, nil
}

// item is one record of a mirrored table: its stored bytes and their
// decoded form, which is never modified (readers get clones).
type item struct {
	raw []byte
	val any   // *store.Authority, *store.Entry, ...; the bytes for meta
	err error // set when raw does not decode: reading it fails
}

// decodeItem decodes the record stored under id in t.
func decodeItem(t table, id string, raw []byte) *item {
	var v any
	switch t {
	case tAuthorities:
		v = new(store.Authority)
	case tEntries:
		v = new(store.Entry)
	case tNodes, tEvicted:
		v = new(store.Node)
	case tCurrent:
		v = new(store.SVIDRecord)
	case tTokens:
		v = new(store.JoinToken)
	case tMTLS:
		v = new(store.MTLSPolicy)
	default: // tMeta holds bytes as they are
		return &item{raw: raw, val: raw}
	}
	// As Bolt's decodeRecord: anything but a JSON object that fits is
	// corrupt, and the error says where it is.
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return &item{raw: raw, err: fmt.Errorf("decoding %s record %q: %w: not a JSON object", t, id, store.ErrCorrupt)}
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return &item{raw: raw, err: fmt.Errorf("decoding %s record %q: %w: %v", t, id, store.ErrCorrupt, err)}
	}
	return &item{raw: raw, val: v}
}

// encodeItem is the stored form of v in t, decoded again so that a
// transaction reads back exactly what another instance will. A record
// over store.MaxRecordBytes is refused, as Bolt refuses it.
func encodeItem(t table, id string, v any) (*item, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding record: %w", err)
	}
	if len(raw) > store.MaxRecordBytes {
		return nil, fmt.Errorf("%w: a %d-byte %s record, the limit is %d", store.ErrTooLarge, len(raw), t, store.MaxRecordBytes)
	}
	it := decodeItem(t, id, raw)
	return it, it.err
}

// Clones of the decoded records: callers may keep and change what they get.

func cloneAuthority(a *store.Authority) *store.Authority {
	c := *a
	c.CertDER = slices.Clone(a.CertDER)
	c.CrossSignedDER = slices.Clone(a.CrossSignedDER)
	if a.UpstreamChainDER != nil {
		c.UpstreamChainDER = make([][]byte, len(a.UpstreamChainDER))
		for i, d := range a.UpstreamChainDER {
			c.UpstreamChainDER[i] = slices.Clone(d)
		}
	}
	return &c
}

func cloneEntry(e *store.Entry) *store.Entry {
	c := *e
	c.Selectors = slices.Clone(e.Selectors)
	c.DNSNames = slices.Clone(e.DNSNames)
	return &c
}

func cloneNode(n *store.Node) *store.Node             { c := *n; return &c }
func cloneSVID(r *store.SVIDRecord) *store.SVIDRecord { c := *r; return &c }
func cloneToken(t *store.JoinToken) *store.JoinToken  { c := *t; return &c }

func clonePolicy(p *store.MTLSPolicy) *store.MTLSPolicy {
	c := *p
	c.ExemptPorts = slices.Clone(p.ExemptPorts)
	return &c
}

// entryUniqueKey identifies what an entry grants: SPIFFE ID, parent ID and
// selector set (n normalized). The JSON array keeps fields apart whatever
// bytes they hold.
func entryUniqueKey(n *store.Entry) string {
	data, _ := json.Marshal(append([]string{n.SPIFFEID, n.ParentID}, n.Selectors...))
	return string(data)
}

// Packs. The SVID index and the audit log are the large tables: a key per
// record would take one etcd operation per record, and a commit of a few
// hundred mints would exceed etcd's 128 operations. So the records one
// commit writes go into packs, a key holding many records, each pack at
// most maxPackBytes.

// maxPackBytes bounds a pack: reading the audit head or one SVID reads a
// whole pack, and a pack must fit in a request with room to spare.
const maxPackBytes = 64 << 10

// joinSVIDPack is the stored form of an SVID pack: the JSON records, one
// per line, in order of issuance, readable with etcdctl.
func joinSVIDPack(recs [][]byte) []byte {
	n := 0
	for _, r := range recs {
		n += len(r) + 1
	}
	out := make([]byte, 0, n)
	for _, r := range recs {
		out = append(out, r...)
		out = append(out, '\n')
	}
	return out
}

func splitSVIDPack(key string, data []byte) ([][]byte, error) {
	if len(data) == 0 || data[len(data)-1] != '\n' {
		return nil, fmt.Errorf("decoding svid pack %q: %w: not newline-terminated JSON lines", key, store.ErrCorrupt)
	}
	recs := bytes.Split(data[:len(data)-1], []byte{'\n'})
	return recs, nil
}

func decodeSVID(key string, rec []byte) (*store.SVIDRecord, error) {
	r := new(store.SVIDRecord)
	if len(rec) == 0 || rec[0] != '{' {
		return nil, fmt.Errorf("decoding svid in pack %q: %w: not a JSON object", key, store.ErrCorrupt)
	}
	if err := json.Unmarshal(rec, r); err != nil {
		return nil, fmt.Errorf("decoding svid in pack %q: %w: %v", key, store.ErrCorrupt, err)
	}
	return r, nil
}

// auditPackV1 is the first byte of an audit pack. A uvarint count of
// records follows, then each record as a uvarint length and the bytes of
// store.MarshalAudit. The records have consecutive seqs, the first one
// that of the pack's key.
const auditPackV1 = 1

func joinAuditPack(recs [][]byte) []byte {
	n := 1 + binary.MaxVarintLen64
	for _, r := range recs {
		n += len(r) + binary.MaxVarintLen32
	}
	out := make([]byte, 0, n)
	out = append(out, auditPackV1)
	out = binary.AppendUvarint(out, uint64(len(recs)))
	for _, r := range recs {
		out = binary.AppendUvarint(out, uint64(len(r)))
		out = append(out, r...)
	}
	return out
}

func splitAuditPack(key string, data []byte) ([][]byte, error) {
	bad := fmt.Errorf("decoding audit pack %q: %w", key, store.ErrCorrupt)
	if len(data) == 0 || data[0] != auditPackV1 {
		return nil, bad
	}
	data = data[1:]
	count, n := binary.Uvarint(data)
	if n <= 0 || count > uint64(len(data)) {
		return nil, bad
	}
	data = data[n:]
	recs := make([][]byte, 0, count)
	for range count {
		l, n := binary.Uvarint(data)
		if n <= 0 || l > uint64(len(data)-n) {
			return nil, bad
		}
		recs = append(recs, data[n:n+int(l)])
		data = data[n+int(l):]
	}
	if len(data) != 0 {
		return nil, bad
	}
	return recs, nil
}

// preimage is a key's value in the committed state a chunked commit
// started from, which a rollback restores.
type preimage struct {
	val     []byte
	present bool
}

// An undo record holds the preimages of the keys one chunk wrote: a
// uvarint count, then for each key its uvarint length and bytes, a byte 1
// (present) or 0 (absent), and when present the value's uvarint length and
// bytes.
type undoEntry struct {
	key string
	pre preimage
}

func encodeUndo(entries []undoEntry) []byte {
	var out []byte
	out = binary.AppendUvarint(out, uint64(len(entries)))
	for _, e := range entries {
		out = binary.AppendUvarint(out, uint64(len(e.key)))
		out = append(out, e.key...)
		if !e.pre.present {
			out = append(out, 0)
			continue
		}
		out = append(out, 1)
		out = binary.AppendUvarint(out, uint64(len(e.pre.val)))
		out = append(out, e.pre.val...)
	}
	return out
}

func decodeUndo(key string, data []byte) ([]undoEntry, error) {
	bad := fmt.Errorf("decoding undo record %q: %w", key, store.ErrCorrupt)
	str := func() ([]byte, bool) {
		l, n := binary.Uvarint(data)
		if n <= 0 || l > uint64(len(data)-n) {
			return nil, false
		}
		s := data[n : n+int(l)]
		data = data[n+int(l):]
		return s, true
	}
	count, n := binary.Uvarint(data)
	if n <= 0 || count > uint64(len(data)) {
		return nil, bad
	}
	data = data[n:]
	out := make([]undoEntry, 0, count)
	for range count {
		k, ok := str()
		if !ok || len(data) == 0 {
			return nil, bad
		}
		e := undoEntry{key: string(k)}
		flag := data[0]
		data = data[1:]
		switch flag {
		case 0:
		case 1:
			v, ok := str()
			if !ok {
				return nil, bad
			}
			e.pre = preimage{val: bytes.Clone(v), present: true}
		default:
			return nil, bad
		}
		out = append(out, e)
	}
	if len(data) != 0 {
		return nil, bad
	}
	return out, nil
}

package etcdstore

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// The key layout under the prefix P (see doc.go):
//
//	P/m/commit              the commit record (commitRecord, JSON)
//	P/m/<table>/<id>        the small tables, one JSON record per key
//	P/s/<expiry><seq>       SVID index packs
//	P/a/<seq>               audit log packs
//	P/x/undo/<n>            undo records of an unfinished chunked commit
//
// P/m/ is what every store instance mirrors in memory and watches; the
// rest is read by range when a transaction asks for it.
const (
	dirMirror = "/m/"
	keyCommit = "/m/commit"
	dirSVIDs  = "/s/"
	dirAudit  = "/a/"
	dirUndo   = "/x/undo/"
)

// table is one of the mirrored tables.
type table int

const (
	tAuthorities table = iota
	tEntries
	tNodes
	tTokens
	tMeta
	tMTLS
	tEvicted
	tCurrent
	numTables
)

// tableNames are the key segments of the tables, and how errors name them
// (the names of Bolt's buckets).
var tableNames = [numTables]string{"authorities", "entries", "nodes", "join_tokens", "meta", "mtls_policies", "evicted_nodes", "svids_current"}

// currentID is the id of (entry, node) in tCurrent, as Bolt's currentKey:
// entry IDs and SPIFFE IDs hold no NUL, so the pair is unambiguous.
func currentID(entryID, nodeID string) string { return entryID + "\x00" + nodeID }

func (t table) String() string { return tableNames[t] }

// keyspace builds and parses the keys of one prefix.
type keyspace struct {
	prefix string
}

func (k keyspace) commit() string    { return k.prefix + keyCommit }
func (k keyspace) mirrorDir() string { return k.prefix + dirMirror }
func (k keyspace) svidDir() string   { return k.prefix + dirSVIDs }
func (k keyspace) auditDir() string  { return k.prefix + dirAudit }
func (k keyspace) undoDir() string   { return k.prefix + dirUndo }

func (k keyspace) record(t table, id string) string {
	return k.prefix + dirMirror + tableNames[t] + "/" + id
}

func (k keyspace) tableDir(t table) string { return k.record(t, "") }

// parseRecord returns the table and id of a key under mirrorDir; ok is
// false for the commit key and anything unknown.
func (k keyspace) parseRecord(key string) (t table, id string, ok bool) {
	rest, found := strings.CutPrefix(key, k.mirrorDir())
	if !found {
		return 0, "", false
	}
	name, id, found := strings.Cut(rest, "/")
	if !found {
		return 0, "", false
	}
	for t, n := range tableNames {
		if n == name {
			return table(t), id, true
		}
	}
	return 0, "", false
}

// svidPack is the key of an SVID pack: the expiry second (as Bolt's
// svidKey, an unsigned big-endian number) then a sequence number, both
// in fixed-width hex so that key order is expiry order, then issuance.
func (k keyspace) svidPack(expiry int64, seq uint64) string {
	return fmt.Sprintf("%s%016x%016x", k.svidDir(), uint64(expiry), seq)
}

// svidSecond is the start of the keys of the packs expiring in that
// second: every pack of an earlier second sorts before it.
func (k keyspace) svidSecond(expiry int64) string {
	return fmt.Sprintf("%s%016x", k.svidDir(), uint64(expiry))
}

// parseSVIDPack returns the expiry second of an SVID pack key.
func (k keyspace) parseSVIDPack(key string) (int64, bool) {
	rest, ok := strings.CutPrefix(key, k.svidDir())
	if !ok || len(rest) != 32 {
		return 0, false
	}
	b, err := hex.DecodeString(rest[:16])
	if err != nil {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(b)), true
}

// auditPack is the key of the audit pack whose first record is seq.
func (k keyspace) auditPack(seq uint64) string {
	return fmt.Sprintf("%s%016x", k.auditDir(), seq)
}

// parseAuditPack returns the seq of the first record of an audit pack.
func (k keyspace) parseAuditPack(key string) (uint64, bool) {
	rest, ok := strings.CutPrefix(key, k.auditDir())
	if !ok || len(rest) != 16 {
		return 0, false
	}
	b, err := hex.DecodeString(rest)
	if err != nil {
		return 0, false
	}
	return binary.BigEndian.Uint64(b), true
}

func (k keyspace) undo(n int) string {
	return fmt.Sprintf("%s%08d", k.undoDir(), n)
}

// prefixEnd is the end of the range of every key starting with p.
func prefixEnd(p string) string { return clientv3.GetPrefixRangeEnd(p) }

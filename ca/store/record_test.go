package store

import (
	"encoding/json"
	"testing"
	"time"
)

// FuzzEncodeSVID: the hand-written encoding of SVID records is byte for
// byte what encoding/json writes, whatever the strings hold, so records
// stay readable as JSON by every tool.
func FuzzEncodeSVID(f *testing.F) {
	f.Add("0000000000000000000000000000002a", "spiffe://example.org/web", "spiffe://example.org/signet/agent/join_token/n1", "e1", "0123456789abcdef", int64(1767225600123456789))
	f.Add("", "", "", "", "", int64(0))
	f.Add("\x00\"\\<>&\u2028\u2029\xff", "ü/\t\n\r", "\x7f", "e\u2029", "a", int64(-1))
	f.Fuzz(func(t *testing.T, serial, id, node, entry, authority string, nanos int64) {
		nb := time.Unix(0, nanos).UTC()
		r := &SVIDRecord{Serial: serial, SPIFFEID: id, NodeID: node, EntryID: entry, AuthorityID: authority, NotBefore: nb, NotAfter: nb.Add(time.Hour).In(time.FixedZone("x", 3600))}
		want, err := json.Marshal(r)
		if err != nil {
			t.Skip(err) // times json cannot write
		}
		if got := encodeSVID(r); string(got) != string(want) {
			t.Errorf("encodeSVID =\n%s\nwant (encoding/json)\n%s", got, want)
		}
	})
}

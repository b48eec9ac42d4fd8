package audit_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/ca/store"
)

// A change and its record commit together; an export is verified offline
// with the CA's public key.
func Example() {
	dir, err := os.MkdirTemp("", "audit-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	st, err := store.Open(filepath.Join(dir, "signet.db"), store.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

	// The change and its record, in one transaction.
	e := &store.Entry{ID: "e1", SPIFFEID: "spiffe://example.org/web", ParentID: "spiffe://example.org/node", Selectors: []string{"unix:uid:1000"}}
	err = st.Update(ctx, func(tx store.Tx) error {
		if err := tx.CreateEntry(e); err != nil {
			return err
		}
		_, err := audit.Append(tx, audit.Record{
			Type:    audit.TypeEntryCreated,
			Outcome: audit.OutcomeSuccess,
			Actor:   audit.AdminActor(1000, "alice"),
			Subject: e.SPIFFEID,
			Details: map[string]string{audit.DetailEntryID: e.ID, audit.DetailParentID: e.ParentID},
		}, now)
		return err
	})
	if err != nil {
		log.Fatal(err)
	}

	// Export, ending with a checkpoint signed by the CA's key.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	var export bytes.Buffer
	_, err = audit.Export(ctx, st, &export, audit.ExportParams{
		Checkpoint: audit.CheckpointParams{Signer: key, KeyID: "jwt-1", Actor: audit.AdminActor(1000, "alice")},
	}, now.Add(time.Minute))
	if err != nil {
		log.Fatal(err)
	}

	// Verify, with the public key from the bundle.
	rep, err := audit.Verify(&export, audit.KeyMap(map[string]crypto.PublicKey{"jwt-1": key.Public()}))
	fmt.Println(rep.Records, "records up to seq", rep.LastSeq, "verified:", err)
	// Output: 2 records up to seq 2 verified: <nil>
}

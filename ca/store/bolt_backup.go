package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

var _ Backuper = (*Bolt)(nil)

// Backup implements Backuper: it copies one read transaction (bbolt's
// Tx.WriteTo) while writers keep committing. The read transaction stays
// open while w is written, so a slow reader of w keeps the pages of that
// instant from being reused: the file may grow during a long backup.
func (b *Bolt) Backup(ctx context.Context, w io.Writer, h BackupHeader) (BackupHeader, error) {
	if err := b.usable(ctx); err != nil {
		return h, err
	}
	b.touched.Store(true)
	err := b.db.View(func(tx *bbolt.Tx) error {
		v, err := readSchemaVersion(tx)
		if err != nil {
			return err
		}
		t := &boltTx{tx: tx}
		seq, hash, err := t.AuditHead()
		if err != nil {
			return err
		}
		rev, err := t.Revision()
		if err != nil {
			return err
		}
		h.Backend, h.SchemaVersion, h.AuditHeadSeq, h.AuditHeadHash, h.Revision = BackendBolt, v, seq, hash, rev
		h.Format = BackupFormat
		return WriteBackup(w, h, func(w io.Writer) error {
			_, err := tx.WriteTo(w)
			return err
		})
	})
	if err != nil {
		return h, b.txErr("backing up store", err)
	}
	return h, nil
}

// MetaRestore is the meta key (GetMeta) of the RestoreInfo of the last
// restore into this store, as JSON.
const MetaRestore = "store_restore"

// RestoreInfo records a restore in the restored store, for the server's
// next start to put it in the audit trail.
type RestoreInfo struct {
	// Backup is the header of the backup restored.
	Backup BackupHeader `json:"backup"`
	// RestoredAt is when the file was restored.
	RestoredAt time.Time `json:"restored_at"`
	// AuditedSeq is the seq of the checkpoint that closes the restore's
	// audit records; zero until a server has written them.
	AuditedSeq uint64 `json:"audited_seq,omitempty"`
}

// ReadRestoreInfo returns the store's RestoreInfo, or ErrNotFound when
// it was never restored from a backup.
func ReadRestoreInfo(tx Tx) (*RestoreInfo, error) {
	v, err := tx.GetMeta(MetaRestore)
	if err != nil {
		return nil, err
	}
	var ri RestoreInfo
	if err := json.Unmarshal(v, &ri); err != nil {
		return nil, fmt.Errorf("reading %s: %v: %w", MetaRestore, err, ErrCorrupt)
	}
	return &ri, nil
}

// WriteRestoreInfo stores ri under MetaRestore.
func WriteRestoreInfo(tx Tx, ri *RestoreInfo) error {
	v, err := json.Marshal(ri)
	if err != nil {
		return fmt.Errorf("writing %s: %w", MetaRestore, err)
	}
	return tx.PutMeta(MetaRestore, v)
}

// ErrStoreExists: a restore was refused because the target store file
// exists. Nothing was written.
var ErrStoreExists = errors.New("store: the store file exists")

// RestoreResult is what RestoreBolt restored.
type RestoreResult struct {
	Header BackupHeader
	// KeyRefs are the KeyRef of every authority not retired: the soft
	// key files (names in the data dir's keys directory) or KMS keys the
	// restored store needs, which a backup does not hold.
	KeyRefs []string
}

// RestoreBolt writes the Bolt backup read from r to a new store file at
// path, with a RestoreInfo (restored at now) for the server's next start.
// It refuses to touch an existing file, saying whether a running signet
// holds it (ErrStoreExists); refuses a file that is not a valid backup
// (ErrBadBackup), a backup of another backend, or one of a schema newer
// than this signet's; and leaves nothing behind when it fails. The file
// appears at path only once it is complete and synced.
func RestoreBolt(path string, r io.Reader, now time.Time) (*RestoreResult, error) {
	if err := refuseExisting(path); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".restore-*")
	if err != nil {
		return nil, fmt.Errorf("restoring store: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the link below, the name is spare
	h, err := ReadBackup(r, tmp)
	if err == nil && h.Backend != BackendBolt {
		err = fmt.Errorf("%w: it is a backup of a %q store, not of a bbolt data dir", ErrBadBackup, h.Backend)
	}
	if err == nil && h.SchemaVersion > schemaVersion {
		err = fmt.Errorf("the backup has store schema version %d, newer than version %d, the newest this signet supports: restore it with a newer signet", h.SchemaVersion, schemaVersion)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("restoring store: %w", err)
	}
	refs, err := markRestored(tmp.Name(), h, now)
	if err != nil {
		return nil, fmt.Errorf("restoring store: %w", err)
	}
	// Link, not rename: it fails if a store appeared at path meanwhile (a
	// server started on the directory).
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("restoring store: %s appeared while restoring: %w", path, ErrStoreExists)
		}
		return nil, fmt.Errorf("restoring store: %w", err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("restoring store: %w", err)
	}
	return &RestoreResult{Header: h, KeyRefs: refs}, nil
}

// refuseExisting fails when path exists, saying whether a running signet
// holds it.
func refuseExisting(path string) error {
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("restoring store: %w", err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 100 * time.Millisecond, ReadOnly: true})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return fmt.Errorf("restoring store: %s is in use by a running signet: %w; restore into a new data dir", path, ErrStoreExists)
	}
	if err == nil {
		db.Close()
	}
	return fmt.Errorf("restoring store: %s already holds a store: %w; restore into a new data dir, or move the old one aside first", path, ErrStoreExists)
}

// markRestored checks that the file at path is a readable bbolt store,
// records the restore in it and returns the key refs of its authorities.
func markRestored(path string, h BackupHeader, now time.Time) ([]string, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("%w: the payload is not a bbolt file: %v", ErrBadBackup, err)
	}
	var refs []string
	err = db.Update(func(tx *bbolt.Tx) error {
		var damage error
		for cerr := range tx.Check() { // drained: the checker runs until it closes
			if damage == nil {
				damage = cerr
			}
		}
		if damage != nil {
			return fmt.Errorf("%w: the payload is damaged: %v", ErrBadBackup, damage)
		}
		if tx.Bucket(bucketMeta) == nil {
			return fmt.Errorf("%w: the payload has no %s bucket: not a signet store", ErrBadBackup, bucketMeta)
		}
		if auths := tx.Bucket(bucketAuthorities); auths != nil {
			err := auths.ForEach(func(k, v []byte) error {
				var a Authority
				if err := decodeRecord(bucketAuthorities, k, v, &a); err != nil {
					return err
				}
				if a.State != StateRetired && a.KeyRef != "" {
					refs = append(refs, a.KeyRef)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return WriteRestoreInfo(&boltTx{tx: tx}, &RestoreInfo{Backup: h, RestoredAt: now.UTC()})
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return refs, err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

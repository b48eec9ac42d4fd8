package etcdstore

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/signet-mesh/signet/ca/store"
)

// BackendEtcd is the Backend of an etcd backup (store.BackupHeader): its
// payload is the key/value stream described at Backup.
const BackendEtcd = "etcd"

// backupDirs are the paths under the prefix a backup holds: the commit
// record and the small tables, the SVID packs and the audit packs. The
// rest is left out: undo records (a chunked commit in flight is not part
// of the committed state), and what replicas keep bound to their leases
// (replica names, the election, the connected agents), which live
// replicas write anew.
var backupDirs = []string{dirMirror, dirSVIDs, dirAudit}

// payloadMagic starts the payload, so that a restore refuses a payload of
// another layout.
const payloadMagic = "signet-etcd-kv 1\n"

// backupPage bounds how many keys one read of a backup returns: audit
// packs are up to 64 KiB each.
const backupPage = 100

// maxBackupKey bounds a key's length in a payload a restore accepts.
const maxBackupKey = 4096

var _ store.Backuper = (*Store)(nil)

// Backup implements store.Backuper. It reads every key of the committed
// state (P/m/, P/s/, P/a/) at one etcd revision, the revision of the
// newest commit (its base when a chunked commit is in flight), page by
// page, and writes them as a stream: payloadMagic, then for each key in
// key order its path under the prefix and its value, each a uvarint
// length then the bytes. Keys bound to replicas' leases and undo records
// are left out (see backupDirs). Writers keep committing meanwhile.
//
// The pages are read at that revision while w is written: if etcd
// compacts it before the last page (a backup longer than
// --auto-compaction-retention), Backup fails; run it again.
func (s *Store) Backup(ctx context.Context, w io.Writer, h store.BackupHeader) (store.BackupHeader, error) {
	if err := s.usable(ctx); err != nil {
		return h, err
	}
	rev, rec, err := s.backupRevision(ctx)
	if err != nil {
		return h, err
	}
	h.Format = store.BackupFormat
	h.Backend, h.SchemaVersion = BackendEtcd, uint64(rec.Format)
	h.AuditHeadSeq, h.AuditHeadHash, h.Revision = rec.AuditSeq, rec.AuditHash, rec.Revision
	err = store.WriteBackup(w, h, func(w io.Writer) error {
		if _, err := io.WriteString(w, payloadMagic); err != nil {
			return err
		}
		var buf []byte
		for _, dir := range backupDirs {
			from, end := s.keys.prefix+dir, prefixEnd(s.keys.prefix+dir)
			for {
				rctx, cancel := s.reqCtx(ctx)
				resp, err := s.cli.Get(rctx, from, clientv3.WithRange(end), clientv3.WithLimit(backupPage), clientv3.WithRev(rev))
				cancel()
				if isCompacted(err) {
					return fmt.Errorf("etcd compacted revision %d during the backup: run it again, or raise etcd's --auto-compaction-retention above the time a backup takes", rev)
				}
				if err != nil {
					return s.etcdErr(ctx, "reading the store for a backup", err)
				}
				for _, kv := range resp.Kvs {
					rel := strings.TrimPrefix(string(kv.Key), s.keys.prefix)
					buf = binary.AppendUvarint(buf[:0], uint64(len(rel)))
					buf = append(buf, rel...)
					buf = binary.AppendUvarint(buf, uint64(len(kv.Value)))
					if _, err := w.Write(buf); err != nil {
						return err
					}
					if _, err := w.Write(kv.Value); err != nil {
						return err
					}
				}
				if !resp.More || len(resp.Kvs) == 0 {
					break
				}
				from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
			}
		}
		return nil
	})
	if err != nil {
		return h, fmt.Errorf("backing up the etcd store: %w", err)
	}
	return h, nil
}

// backupRevision returns the etcd revision that holds the newest committed
// state, and its commit record: the current revision, or the base of a
// chunked commit in flight (waiting while that base is compacted).
func (s *Store) backupRevision(ctx context.Context) (int64, commitRecord, error) {
	for {
		rctx, cancel := s.reqCtx(ctx)
		resp, err := s.cli.Get(rctx, s.keys.commit())
		cancel()
		if err != nil {
			return 0, commitRecord{}, s.etcdErr(ctx, "reading the commit key", err)
		}
		if len(resp.Kvs) == 0 {
			return 0, commitRecord{}, fmt.Errorf("etcd: the commit key %s is missing: %w", s.keys.commit(), store.ErrCorrupt)
		}
		rec, err := decodeCommit(resp.Kvs[0].Value)
		if err != nil {
			return 0, commitRecord{}, err
		}
		if rec.Intent == nil {
			return resp.Header.Revision, rec, nil
		}
		base := rec.Intent.Base
		rctx, cancel = s.reqCtx(ctx)
		resp, err = s.cli.Get(rctx, s.keys.commit(), clientv3.WithRev(base))
		cancel()
		if err == nil && len(resp.Kvs) == 1 {
			if rec, err = decodeCommit(resp.Kvs[0].Value); err != nil {
				return 0, commitRecord{}, err
			}
			return base, rec, nil
		}
		if err != nil && !isCompacted(err) {
			return 0, commitRecord{}, s.etcdErr(ctx, "reading the commit key", err)
		}
		// The base of the chunked commit in flight is gone: wait for it to
		// publish or be rolled back.
		select {
		case <-ctx.Done():
			return 0, commitRecord{}, fmt.Errorf("backing up the etcd store: a chunked commit is in flight: %w", ctx.Err())
		case <-time.After(s.intentTTL / 4):
		}
	}
}

// ErrPrefixInUse: a restore was refused because the etcd prefix holds
// keys (a store, or a replica's claim). Nothing was written.
var ErrPrefixInUse = errors.New("etcd store: the prefix is not empty")

// Restore writes the etcd backup read from r under opts.Prefix (connecting
// as Open does), with a store.RestoreInfo (restored at now) for the
// server's next start. It refuses a prefix that holds any key, a store or
// a replica's claim (ErrPrefixInUse); a file that is not a valid backup
// (store.ErrBadBackup), a backup of another backend, or one of a layout
// newer than this signet's. It checks the whole file before writing, then
// writes in Txns within opts' limits, each only while the prefix has no
// commit key, and the commit key last: a server that opens the prefix
// meanwhile makes the restore fail, and a restore that fails leaves no
// store a server would open (it deletes what it wrote when it can).
func Restore(ctx context.Context, opts Options, r io.Reader, now time.Time) (*store.RestoreResult, error) {
	prefix := orDefault(opts.Prefix, DefaultPrefix)
	if !strings.HasPrefix(prefix, "/") || strings.HasSuffix(prefix, "/") {
		return nil, fmt.Errorf("etcd prefix %q must start with / and not end with one (like %s)", prefix, DefaultPrefix)
	}
	tmp, err := os.CreateTemp("", "signet-etcd-restore-*")
	if err != nil {
		return nil, fmt.Errorf("restoring store: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h, err := store.ReadBackup(r, tmp)
	if err == nil && h.Backend != BackendEtcd {
		err = fmt.Errorf("%w: it is a backup of a %q store, not of an etcd store", store.ErrBadBackup, h.Backend)
	}
	if err == nil && h.SchemaVersion > formatVersion {
		err = fmt.Errorf("the backup has etcd store layout version %d, newer than version %d, the newest this signet supports: restore it with a newer signet", h.SchemaVersion, formatVersion)
	}
	if err != nil {
		return nil, fmt.Errorf("restoring store: %w", err)
	}
	s := &Store{
		cli:        opts.Client,
		keys:       keyspace{prefix: prefix},
		reqTimeout: orDefault(opts.RequestTimeout, DefaultRequestTimeout),
		maxOps:     orDefault(opts.MaxTxnOps, defaultMaxTxnOps),
		maxBytes:   orDefault(opts.MaxRequestBytes, defaultMaxRequestBytes) * 2 / 3,
	}
	// Check the payload before writing anything; then read it again to
	// write it, a Txn at a time.
	payload := func(each func(rel string, v []byte) error) (commit []byte, refs []string, err error) {
		if _, err := tmp.Seek(0, io.SeekStart); err != nil {
			return nil, nil, fmt.Errorf("restoring store: %w", err)
		}
		return s.readPayload(bufio.NewReaderSize(tmp, 1<<16), each)
	}
	commit, refs, err := payload(nil)
	if err != nil {
		return nil, fmt.Errorf("restoring store: %w", err)
	}
	if s.cli == nil {
		if len(opts.Endpoints) == 0 {
			return nil, errors.New("etcd store: no endpoints: set --etcd-endpoints")
		}
		cli, err := clientv3.New(clientv3.Config{
			Endpoints: opts.Endpoints, TLS: opts.TLS, DialTimeout: dialTimeout,
			Logger: zap.NewNop(), Context: context.Background(),
		})
		if err != nil {
			return nil, fmt.Errorf("connecting to etcd %s: %w", strings.Join(opts.Endpoints, ","), err)
		}
		defer cli.Close()
		s.cli = cli
	}
	if err := s.refuseInUse(ctx); err != nil {
		return nil, err
	}
	ri, err := json.Marshal(&store.RestoreInfo{Backup: h, RestoredAt: now.UTC()}) // as store.WriteRestoreInfo
	if err != nil {
		return nil, fmt.Errorf("restoring store: %w", err)
	}
	if err := s.writeRestore(ctx, payload, commit, ri); err != nil {
		return nil, err
	}
	return &store.RestoreResult{Header: h, KeyRefs: refs}, nil
}

// readPayload reads and checks a backup's payload: every key under one of
// backupDirs, one commit record of a layout this signet reads, with no
// chunked commit in flight. It calls each (when not nil) with every key
// but the commit key and MetaRestore, and returns the commit record's
// value and the key refs of the authorities not retired.
func (s *Store) readPayload(br *bufio.Reader, each func(rel string, v []byte) error) (commit []byte, refs []string, err error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", store.ErrBadBackup, fmt.Sprintf(format, args...))
	}
	magic := make([]byte, len(payloadMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != payloadMagic {
		return nil, nil, bad("the payload does not start with %q", strings.TrimSpace(payloadMagic))
	}
	readField := func(max uint64, what string) ([]byte, error) {
		n, err := binary.ReadUvarint(br)
		if err != nil {
			return nil, bad("reading the length of a %s: %v", what, err)
		}
		if n > max {
			return nil, bad("a %d-byte %s, more than the %d this store accepts", n, what, max)
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(br, b); err != nil {
			return nil, bad("reading a %s: %v", what, err)
		}
		return b, nil
	}
	metaRestore := s.keys.record(tMeta, store.MetaRestore)[len(s.keys.prefix):]
	for {
		if _, err := br.Peek(1); errors.Is(err, io.EOF) {
			break
		}
		k, err := readField(maxBackupKey, "key")
		if err != nil {
			return nil, nil, err
		}
		rel := string(k)
		v, err := readField(uint64(s.maxBytes), "value of "+rel)
		if err != nil {
			return nil, nil, err
		}
		known := false
		for _, dir := range backupDirs {
			known = known || strings.HasPrefix(rel, dir)
		}
		if !known {
			return nil, nil, bad("key %q is not one a store backup holds", rel)
		}
		switch {
		case rel == keyCommit:
			if commit != nil {
				return nil, nil, bad("two commit records")
			}
			rec, err := decodeCommit(v)
			if err != nil {
				return nil, nil, err
			}
			if rec.Intent != nil {
				return nil, nil, bad("the commit record holds a chunked commit in flight")
			}
			commit = v
			continue
		case rel == metaRestore:
			continue // replaced by this restore's
		}
		if t, id, ok := s.keys.parseRecord(s.keys.prefix + rel); ok && t == tAuthorities {
			it := decodeItem(t, id, v)
			if it.err != nil {
				return nil, nil, fmt.Errorf("%w: %v", store.ErrBadBackup, it.err)
			}
			if a := it.val.(*store.Authority); a.State != store.StateRetired && a.KeyRef != "" {
				refs = append(refs, a.KeyRef)
			}
		}
		if each != nil {
			if err := each(rel, v); err != nil {
				return nil, nil, err
			}
		}
	}
	if commit == nil {
		return nil, nil, bad("the payload has no commit record: not a signet store")
	}
	return commit, refs, nil
}

// refuseInUse fails with ErrPrefixInUse when any key is under the prefix,
// naming a replica's claim when there is one.
func (s *Store) refuseInUse(ctx context.Context) error {
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	p := s.keys.prefix + "/"
	resp, err := s.cli.Get(rctx, p, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return s.etcdErr(ctx, "checking that the prefix is empty", err)
	}
	if resp.Count == 0 {
		return nil
	}
	claims, err := s.cli.Get(rctx, s.keys.prefix+dirReplicas, clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithLimit(1))
	if err != nil {
		return s.etcdErr(ctx, "checking that the prefix is empty", err)
	}
	if len(claims.Kvs) > 0 {
		name := strings.TrimPrefix(string(claims.Kvs[0].Key), s.keys.prefix+dirReplicas)
		return fmt.Errorf("restoring store: server %q holds a claim on etcd prefix %s: %w; stop the servers on it, and restore into a new prefix (--etcd-prefix)", name, s.keys.prefix, ErrPrefixInUse)
	}
	return fmt.Errorf("restoring store: etcd prefix %s holds %d keys: %w; restore into a new prefix (--etcd-prefix), or delete the old store first (etcdctl del --prefix %s)", s.keys.prefix, resp.Count, ErrPrefixInUse, p)
}

// writeRestore writes the keys payload reads in Txns within the store's
// limits, then the
// restore info and the commit key, every Txn only while the commit key is
// absent. When one fails it deletes what it wrote, unless a store
// appeared meanwhile.
func (s *Store) writeRestore(ctx context.Context, payload func(each func(rel string, v []byte) error) ([]byte, []string, error), commit, restoreInfo []byte) error {
	absent := clientv3.Compare(clientv3.CreateRevision(s.keys.commit()), "=", 0)
	send := func(ops []clientv3.Op) error {
		rctx, cancel := s.reqCtx(ctx)
		defer cancel()
		resp, err := s.cli.Txn(rctx).If(absent).Then(ops...).Commit()
		if err != nil {
			return s.etcdErr(ctx, "writing the restored store", err)
		}
		if !resp.Succeeded {
			return fmt.Errorf("restoring store: a server opened etcd prefix %s while restoring: %w", s.keys.prefix, ErrPrefixInUse)
		}
		return nil
	}
	fail := func(err error) error {
		if errors.Is(err, ErrPrefixInUse) {
			return err // not ours to delete
		}
		cctx, cancel := context.WithTimeout(context.Background(), s.reqTimeout)
		defer cancel()
		if _, derr := s.cli.Txn(cctx).If(absent).Then(clientv3.OpDelete(s.keys.prefix+"/", clientv3.WithPrefix())).Commit(); derr != nil {
			return fmt.Errorf("%w (and deleting the partial restore failed: %v; delete it with etcdctl del --prefix %s/)", err, derr, s.keys.prefix)
		}
		return err
	}
	const opOverhead = 64 // bytes of a put besides its key and value
	var ops []clientv3.Op
	size := 0
	_, _, err := payload(func(rel string, v []byte) error {
		key := s.keys.prefix + rel
		n := len(key) + len(v) + opOverhead
		if len(ops) > 0 && (len(ops)+1 > s.maxOps || size+n > s.maxBytes) {
			if err := send(ops); err != nil {
				return err
			}
			ops, size = ops[:0], 0
		}
		ops = append(ops, clientv3.OpPut(key, string(v)))
		size += n
		return nil
	})
	if err != nil {
		return fail(err)
	}
	if len(ops) > 0 {
		if err := send(ops); err != nil {
			return fail(err)
		}
	}
	// Last, so that the commit key's revision covers every key above.
	err = send([]clientv3.Op{
		clientv3.OpPut(s.keys.record(tMeta, store.MetaRestore), string(restoreInfo)),
		clientv3.OpPut(s.keys.commit(), string(commit)),
	})
	if err != nil {
		return fail(err)
	}
	return nil
}

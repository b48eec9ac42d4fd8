// Package store keeps the CA's state: authorities, registration entries,
// attested nodes, join tokens, the index of issued SVIDs and of the
// current SVID of each entry and node, the mTLS policies, and a revision
// counter that tells agents when entries, the bundle or the policies
// changed.
//
// Store is the interface the CA codes against; Bolt, returned by Open,
// implements it over one bbolt file, and package etcdstore over etcd, for
// several CA replicas. Every backend passes the conformance suite in
// package storetest (Run, and RunLarge for transactions beyond one etcd
// request; RunShared for a backend several processes share).
//
// Open the store once per process:
//
//	st, err := store.Open(filepath.Join(dataDir, "signet.db"), store.Options{Logger: logger})
//	if err != nil {
//		return err
//	}
//	defer st.Close()
//
// Change state in Update. The function's writes commit together when it
// returns nil and are discarded when it returns an error:
//
//	err = st.Update(ctx, func(tx store.Tx) error {
//		rev, err := tx.NextRevision()
//		if err != nil {
//			return err
//		}
//		e.Revision = rev
//		return tx.CreateEntry(e) // errors.Is(err, store.ErrAlreadyExists) on a duplicate
//	})
//
// Read in View, which sees one consistent snapshot:
//
//	var entries []*store.Entry
//	err = st.View(ctx, func(tx store.Tx) (err error) {
//		entries, err = tx.ListEntries(store.EntryFilter{ParentID: nodeID})
//		return err
//	})
//
// On hot paths where many goroutines write at once (recording issued
// SVIDs), use Batch: concurrent calls share one commit and one fsync (and
// under load a commit waits up to Options.MaxBatchDelay for more callers
// to share it; Options.MaxBatchSize bounds a group). The knobs are bbolt's
// DB.MaxBatchSize and DB.MaxBatchDelay, over signet's own group commit,
// which tells a busy store from an idle one. The function may run more than once, so it must not have
// effects outside tx:
//
//	err = st.Batch(ctx, func(tx store.Tx) error {
//		return tx.PutSVID(rec)
//	})
//
// Bolt's Update joins the same group commit: an admin change and the
// mints queued with it share one fsync instead of the mints waiting
// behind the change's own commit. Each function is still all or nothing:
// one that fails is left out of its group, which runs again without it.
// A group's callers get their results before its change is published to
// the subscribers below, and the writer is free for the next group by
// then.
//
// Bolt's GetNode and GetEntry, read by every mint, keep the records they
// decoded with the bytes they came from (decodecache.go): a read whose
// stored bytes are unchanged gets a copy without decoding JSON again, one
// whose record changed decodes afresh. Callers own what they get.
//
// Streams that push changes to agents wait on Subscribe instead of polling:
// it signals after each commit that took a revision. SubscribeChanges
// also says whom such a commit concerns (Change: the parents of the
// entries it wrote and the nodes it wrote, or everyone), so that a fleet's
// streams need not all read for one node's entry, and which kinds of record
// it wrote (Change.Kinds), so that a bundle change does not make every
// stream read its entries again (Change.EntriesUnchanged). A write of a
// node's status alone (its applied bundle, its renewed SVID) concerns
// nobody. etcdstore carries the Change in the commit record to every
// replica.
//
// The audit log is kept here so that a change and its record commit in one
// transaction, but package audit writes and reads it (audit.Append inside
// the change's Update or Batch); the store only keeps the records in seq
// order and refuses one that does not follow the head. SubscribeAudit
// signals after each commit that appended a record.
//
// # Caveats
//
// A Tx is valid only inside the function it was passed to. Do not start a
// transaction from inside another one: View inside Update (or Batch inside
// either) can deadlock, since bbolt allows one writer and a long read can
// block the writer from growing the file.
//
// There is one writer at a time. Keep write transactions short and do no
// network I/O, key generation or signing in them; a Batch group waits for
// its slowest function. Prepare such work before the transaction and, in
// it, check that what it was prepared from has not changed (ca/rotation's
// commit compares a digest of the authorities): a transaction that only
// re-checks and writes can be retried, which an optimistic backend (etcd)
// needs.
//
// A function passed to Batch runs with the writes of the functions before
// it in the same group already applied, and is rerun when another function
// of the group fails. It must be safe to run again, and must not depend on
// running alone.
//
// ctx bounds only the wait for the transaction to start. Once a function
// runs, its transaction completes even if ctx ends.
//
// ForEachSVID must not be used to change the SVID index from inside its
// callback; collect the keys and write after the walk (as PruneSVIDs does).
//
// Entry selectors are stored sorted and without duplicates, whatever order
// the caller gave; two entries with the same SPIFFE ID, parent and selector
// set are duplicates.
//
// The file is opened with an exclusive lock: a second process opening the
// same file waits Options.Timeout and fails. A file written by a newer
// signet (a higher schema version) is refused, not downgraded.
//
// # Backup and restore
//
// Bolt implements Backuper: Backup copies one read transaction (bbolt's
// Tx.WriteTo) while writers go on, framed by WriteBackup as a backup file:
// a magic line, a JSON BackupHeader (format, backend, schema version,
// trust domain, time, audit head, revision), the payload, and a trailer
// with the payload's length and the SHA-256 of all before it. ReadBackup
// refuses a file that is not a backup, is cut anywhere, or fails its
// checksum (ErrBadBackup). RestoreBolt writes a backup into a new store
// file, never over an existing one (ErrStoreExists, saying whether a
// running signet holds it), and leaves a RestoreInfo under MetaRestore for
// the server's next start to audit. Another backend implements Backuper
// with its own Backend name and payload (etcd: the key-values of signet's
// prefix at one revision) and its own restore into an empty store; the
// framing and the header are shared.
//
// Bolt.Export reads a whole store in one read transaction as it is stored
// (Contents: used join tokens, the current SVID index, every meta key and
// the counters, beside the Tx to walk the SVID index and the audit log),
// for a copy into another backend (etcdstore.Store.Import, behind signet
// store migrate).
//
// A long backup keeps its read transaction open while its reader is slow,
// so the pages of that instant are not reused: the file can grow during
// it.
//
// Options.OnMigrate runs in the transaction that migrates an existing file
// to a newer schema: the server appends the migration's audit record
// there, so both commit or neither does.
//
// PruneSVIDs reads the expired prefix of the SVID index (it is kept in
// expiry order) and the current index's entries of what it deletes. Run it
// periodically, not per request. It never touches the audit log: audit records are removed only
// by audit.Prune, once exported.
//
// Appending audit records from several goroutines is safe (there is one
// writer), but each append reads the head, so records of one Batch group
// take consecutive seqs in the order the group ran.
package store

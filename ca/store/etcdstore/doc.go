// Package etcdstore keeps the CA's state in etcd: a store.Store that
// several CA replicas share, with one audit chain and changes pushed to
// every replica through etcd watches. Only the server links it; the rest
// of the CA codes against store.Store, and this backend passes the same
// conformance suite as bbolt (storetest.Run), plus storetest.RunLarge and
// storetest.RunShared, against a real etcd.
//
// Open it once per process:
//
//	st, err := etcdstore.Open(ctx, etcdstore.Options{
//		Endpoints: []string{"https://etcd-0:2379", "https://etcd-1:2379"},
//		TLS:       tlsConfig,      // nil for plain http
//		Prefix:    "/signet",      // the default
//		Logger:    logger,
//	})
//	if err != nil {
//		return err // names etcd and its endpoints when it is unreachable
//	}
//	defer st.Close()
//
// and use it as any store.Store (see package store).
//
// # Key layout
//
// Everything is under one prefix P, so that `etcdctl get --prefix P` or an
// etcd snapshot is a consistent copy at one revision:
//
//	P/m/commit              the commit record (JSON): format version, the
//	                        revision counter, the SVID pack counter, the
//	                        audit head, what the last commit did, and the
//	                        intent of a chunked commit in flight
//	P/m/authorities/<id>    one JSON record per key, as Bolt stores them
//	P/m/entries/<id>
//	P/m/nodes/<spiffe id>
//	P/m/join_tokens/<hash>
//	P/m/meta/<key>          the bytes as given
//	P/m/mtls_policies/<id>
//	P/m/evicted_nodes/<spiffe id>
//	P/m/svids_current/<entry id>\x00<node id>
//	                        the current SVID of each entry and node
//	                        (Tx.ForEachCurrentSVID), one JSON record each
//	P/s/<expiry><seq>       an SVID pack: the JSON records, one per line,
//	                        of the SVIDs one commit issued expiring in that
//	                        second (hex Unix seconds, then a counter)
//	P/a/<seq>               an audit pack: records seq, seq+1, ... that one
//	                        commit appended, in store.MarshalAudit's binary
//	                        form, at most 64 KiB
//	P/x/undo/<n>            undo records of a chunked commit in flight
//
// Other paths under P are outside the commit protocol and the mirror:
// Replica (replica.go) keeps there, bound to each CA replica's session
// lease, the replica names in use (P/replicas/), the leader election
// (P/election/, concurrency.Election) and what each replica publishes of
// its connected agents (P/live/).
//
// Packs keep a group commit of hundreds of mints to a handful of etcd
// operations. Every instance mirrors P/m/ in memory (the small tables),
// kept current by a watch on P/m/; the SVID index and the audit log are
// read from etcd by range when a transaction asks for them.
//
// # Commit protocol
//
// The mod revision R of P/m/commit is the revision of the committed
// state. A transaction runs its function against the mirror at R
// (reading the large tables at R), buffering its writes, then commits
// them in one Txn:
//
//	If(ModRevision(P/m/commit) == R)
//	Then(deleted ranges, puts, deletes, Put(P/m/commit, new record))
//
// If another instance committed first, the compare fails: the instance
// waits for its watch to deliver that commit and runs the function again
// (Update and Batch alike). Since every commit moves the commit key, the
// transactions are serializable across instances; the audit head is in
// the commit record, so every append is a compare-and-swap on it and all
// writers extend one chain. Within an instance, writers take turns
// (Update, or the leader of a Batch group), so they never conflict with
// each other. Batch is group commit: the functions queued meanwhile run
// in one transaction, each on a savepoint (a failing one loses only its
// own writes), committed in one Txn; a group stops growing where one more
// function would not fit in one Txn.
//
// Subscribe and SubscribeAudit are driven by the watch: the commit record
// says whether the commit took a revision or appended audit records, and
// every instance wakes its subscribers when it applies the commit.
//
// # Large transactions
//
// etcd refuses a Txn of more than --max-txn-ops (128) operations or
// --max-request-bytes (1.5 MiB). A transaction beyond either (creating
// 1,000 entries) is committed in chunks, all or nothing:
//
//  1. Intent: a Txn compared like any commit puts the commit record with
//     an intent naming the base revision R and a lease the writer keeps
//     alive. From then on every other writer's compare fails, and they
//     wait; readers keep reading at R.
//  2. Chunks: each Txn, compared with the intent's revision, writes part
//     of the keys and an undo record holding their values at R.
//  3. Publish: one Txn, compared likewise, deletes the ranges, writes the
//     last keys, removes the undo records and puts the new commit record.
//     Readers see the whole transaction from there on.
//
// A writer that fails between 1 and 3 restores the keys from its undo
// records and puts the base commit record back. A writer that dies there
// leaves the intent, the chunks and the undo records in etcd, invisible to
// readers (who read at R); once its lease has expired, the next writer
// takes the intent over (so that the dead writer, were it only
// partitioned, fails its next compare), restores every key from the undo
// records, and puts the base commit record back; then it commits its own
// transaction. A rollback that dies midway is taken over the same way and
// redone (restoring values is idempotent).
//
// # Backup and restore
//
// Store implements store.Backuper (Backend "etcd"): Backup reads P/m/,
// P/s/ and P/a/ at one etcd revision, that of the newest commit (the base
// of a chunked commit in flight), page by page, and writes every key (its
// path under P) and value as a stream inside store.WriteBackup's framing.
// It leaves out what is not committed state: the undo records of a
// chunked commit, and the keys bound to replicas' leases (P/replicas/,
// P/election/, P/live/), which live replicas write anew. A backup longer
// than etcd's compaction retention fails (its revision is gone): run it
// again.
//
// Restore writes a backup under an empty prefix, any prefix (the paths
// are relative). It checks the whole file first; refuses a prefix that
// holds any key, naming a replica's claim when there is one; writes the
// keys in Txns within the store's limits, each only while the prefix has
// no commit key; then, in one Txn, the store.RestoreInfo for the server's
// next start and the commit key, last, so that its revision covers every
// key. A store opened meanwhile makes it fail; a failed restore deletes
// what it wrote, leaving no commit key a server would open.
//
// # Caveats
//
// The function of Update, not only of Batch, may run more than once: when
// another instance committed in between. It must change state only
// through its Tx. Do no signing or I/O in it (see package store).
//
// ctx bounds every wait and every etcd request, each also bounded by
// Options.RequestTimeout. When a commit request fails or ends with ctx,
// the commit may still have happened: the caller sees an error for a
// write that etcd made. The CA's writes tolerate this (an SVID recorded
// and not handed out, a join token spent by a failed attestation); none
// is made twice or without its audit record.
//
// An unreachable or leaderless etcd fails every write with an error that
// names etcd, store.ErrUnavailable unless ctx ended first. Views of the
// small tables keep answering from the mirror as it was (the agents'
// entries stay served); reads of the SVID index and the audit log fail
// the same way. Writes work again once etcd is back, without reopening
// the store.
//
// A View sees another instance's commit once the watch delivered it
// (milliseconds); a write is always checked against the newest commit.
//
// Commits are serialized across instances by the commit key: instances
// writing at the same time take turns through conflicts and reruns. A
// long write transaction (a scan of the SVID index) on one instance
// conflicts with every commit another instance makes meanwhile, and gives
// up with store.ErrConflict after 100 reruns: read in a View, then write
// in a short transaction that checks what it read (see package store). A
// chunked commit stops every other writer until it publishes, and a
// writer that died mid-commit stops them up to Options.IntentTTL.
//
// Every instance holds the small tables in memory (about 2.7 KiB per
// entry of 500 stored bytes), the current SVID of each entry and node
// among them; the SVID index and the audit log are not held. Each mint
// rewrites its entry's current SVID record: one etcd operation, so a
// group commit carries at most about --max-txn-ops mints. A commit that
// changes a table copies that table's map in the mirror: a few
// milliseconds per commit that changes entries when there are 100,000.
//
// Reads use the committed state's revision R. If etcd has compacted R but
// the state has not changed since, they read at a newer revision, which
// holds the same state. If the state also changed, a View fails (an
// Update reruns), and a watch that missed compacted history reloads the
// mirror. Run etcd with automatic compaction (--auto-compaction-retention)
// so that its history does not grow without bound: every commit rewrites
// the commit key. Keep the retention above a few seconds.
//
// etcd keeps everything in its quota (--quota-backend-bytes, 2 GiB by
// default, 8 GiB at most advised): the SVID index and the audit log must
// be pruned (PruneSVIDs, audit.Prune after export) faster than issuance
// grows them.
//
// One record must fit in one etcd request (two thirds of
// Options.MaxRequestBytes): a larger meta value is refused.
//
// Import copies a stopped server's Bolt store (store.Bolt.Export) into an
// empty prefix: the small tables in one transaction, then the SVID index
// and the audit log in transactions of importChunk records, each chunked
// within etcd's limits like any commit. The audit head is set where the
// first copied record chains from, so a pruned log keeps its seqs and
// hashes and the chain goes on.
//
// Nothing but signet may write under the prefix. The store holds only
// what the CA gives it: no private key in clear (Authority.KeyRef names a
// file or a KMS key).
package etcdstore

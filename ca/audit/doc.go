// Package audit is the CA's compliance audit trail: an append-only,
// hash-chained log of every state change, written in the same store
// transaction as the change, with signed checkpoints, exports (JSON Lines
// or CSV) and an offline verifier.
//
// # Writing records
//
// Every change appends its record inside the function that makes the
// change, and returns Append's error from it. Either both commit or
// neither does, and a record that cannot be written fails the change
// (fail closed):
//
//	err := st.Batch(ctx, func(tx store.Tx) error {
//		if err := tx.PutSVID(rec); err != nil {
//			return err
//		}
//		_, err := audit.Append(tx, audit.Record{
//			Type:    audit.TypeSVIDIssued,
//			Outcome: audit.OutcomeSuccess,
//			Actor:   nodeID.String(),
//			Subject: rec.SPIFFEID,
//			Details: map[string]string{
//				audit.DetailSerial:    rec.Serial,
//				audit.DetailNotAfter:  audit.FormatTime(rec.NotAfter),
//				audit.DetailCSRSHA256: audit.SHA256Hex(csrDER),
//			},
//		}, clock.Now())
//		return err
//	})
//
// A failure (a refused attestation) is recorded the same way with
// OutcomeFailure and a DetailReason, in a transaction of its own that
// commits. Admin changes name the admin with AdminActor.
//
// The server signs a checkpoint periodically, skipping it when nothing
// happened since the last one:
//
//	err := st.Update(ctx, func(tx store.Tx) error {
//		head, ok, err := audit.Head(tx)
//		if err != nil || (ok && head.Type == audit.TypeCheckpoint) {
//			return err
//		}
//		_, err = audit.Checkpoint(tx, audit.CheckpointParams{Signer: key, KeyID: kid}, clock.Now())
//		return err
//	})
//
// # Reading records
//
// Export signs a checkpoint and streams the records up to it, with that
// checkpoint last; Follow streams new records as they commit; Verify
// checks an export offline and VerifyStore the live log; VerifyTail the
// live log from its newest checkpoint (LastCheckpoint) to its head, which
// the server runs on every start; Prune removes exported records, and
// PrunePreview counts what it would remove. A record missing from the
// live log is a *VerifyError of ErrMissing naming the missing seq, from
// Export as from the verifiers. Types lists the record types, for filters
// and help texts. They all read the store in chunks of a thousand
// records, one short read transaction each, and hold no more than that in
// memory.
//
// # Record fields
//
// A record has, in this order: seq (a decimal number from 1, without
// gaps), time (UTC, TimeFormat: "2006-01-02T15:04:05.000000000Z", always
// nine fractional digits), type, outcome ("success" or "failure"), actor,
// subject, details (string keys to string values), key_id and signature
// (checkpoints only; the signature is standard base64 with padding),
// prev_hash and hash (64 lower-case hex digits). Record 1's prev_hash is
// GenesisHash, 64 zeros. All strings are UTF-8.
//
// # The hash
//
// A record's hash is the lower-case hex SHA-256 of the ASCII bytes
// "signet-audit-v1\n" followed by the record's fields, each encoded as
// str(s) = len(s) as 4 bytes big-endian, then the UTF-8 bytes of s:
//
//	str(seq as decimal, no leading zeros)
//	str(time as TimeFormat)
//	str(type) str(outcome) str(actor) str(subject)
//	the number of details as 4 bytes big-endian, then for each detail,
//	    in byte-wise order of the keys: str(key) str(value)
//	str(key_id) str(signature) str(prev_hash)
//
// An absent field is the empty string: str("") is four zero bytes. The
// length prefixes make the encoding unambiguous whatever bytes the fields
// hold, and it needs no JSON canonicalization: an auditor can recompute it
// in a few lines of any language from the exported values.
//
// # Checkpoints
//
// A checkpoint is a record of type "checkpoint" whose signature is over
// the bytes "signet-audit-checkpoint-v1\n" followed by the same fields as
// the hash, in the same encoding, except the signature itself:
//
//	str(seq) str(time) str(type) str(outcome) str(actor) str(subject)
//	details str(key_id) str(prev_hash)
//
// It thereby commits to the head of the chain before it (seq-1 and
// prev_hash, that record's hash, which in turn covers every record
// before it), to when it was made, and to its details: "reason"
// ("periodic", "export", or "restore" on the first start on a restored
// store), "first_seq" (the oldest record the log held),
// and for an export, its filter ("filter_since", "filter_until",
// "filter_types", "filter_spiffe_id"). ECDSA keys sign the SHA-256 of
// those bytes (ASN.1 DER signature), RSA keys their SHA-256 with
// PKCS #1 v1.5, Ed25519 keys the bytes themselves. key_id names the key:
// a verifier looks it up in the keys it trusts, the CA's bundle.
//
// # Export formats
//
// JSON Lines: one record per line, a JSON object with the keys seq, time,
// type, outcome, actor, subject, details, key_id, signature, prev_hash,
// hash in that order, without spaces; actor, subject, details, key_id and
// signature are left out when empty; details is an object with its keys in
// byte order; strings escape only '"', '\\' and control characters (\n,
// \r, \t, else \u00XX). Verify accepts a line only in exactly this form,
// so that what a reader sees is what was verified (a repeated key, say,
// cannot show one value to a person and another to the verifier).
//
// CSV: a header row with the same names, then one row per record, every
// column present; details is the JSON object above, or empty. A
// spreadsheet may read a cell starting with '=' as a formula: open
// exports of untrusted input as text.
//
// # What Verify detects
//
// Verify recomputes every record's hash (an edited field shows there),
// checks that seqs increase and that each record's prev_hash is the hash
// of the record before it when their seqs follow each other (a record
// edited and rehashed, inserted or replaced shows at the record after
// it), checks every checkpoint signature whose key it knows (a known key
// with a bad signature fails; checkpoints by keys it does not know, such
// as since-rotated ones, are counted in Report.UnverifiedCheckpoints),
// and requires the export to end with a checkpoint signed by a key it
// knows. The error names the first bad record by line and seq.
//
// An unfiltered export must be gap-free from the final checkpoint's
// first_seq to the final checkpoint: a deleted line shows as a gap at the
// line after it, swapped lines as a gap at the first of them, lines cut
// from the start as a start after first_seq, lines cut from the end as an
// export that does not end with a signed checkpoint. One thing the export
// alone cannot show is a cut exactly after an earlier checkpoint of the
// chain (an earlier export's, or a periodic one), since that was a valid
// end once: compare Report.LastSeq and Report.Final.Time with what you
// expect, or verify the live log.
//
// A filtered export (its final checkpoint records the filter) is not a
// contiguous chain. Verify then checks each record's own hash, the links
// between records whose seqs follow each other, increasing seqs and the
// final signature, and reports Filtered; gaps are not errors. A record
// that follows a gap is linked to nothing, so it could have been edited
// and rehashed: use unfiltered exports as evidence, filtered ones as
// views.
//
// A pruned log starts with a checkpoint, the one Prune anchored at: its
// signature vouches for the pruned head its prev_hash names, which Verify
// cannot otherwise check. Verify accepts a first record after seq 1 when
// it is where the final checkpoint's first_seq says the log started;
// VerifyStore accepts it when it is a checkpoint. Report.Pruned says so.
//
// # Caveats
//
// Checkpoint signs inside the write transaction, which holds the store's
// one writer: use a local key, not a remote KMS, or accept a stall of one
// signing round trip per checkpoint.
//
// The chain is as strong as the CA's key: whoever holds it, or can write
// the store file and sign, can rewrite history. Exports kept elsewhere
// are what make a later rewrite visible.
//
// Verify trusts the final checkpoint's details (its filter and
// first_seq) because they are signed; a filtered export cannot show that
// a selected record was deleted from it.
package audit

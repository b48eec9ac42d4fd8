package audit

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/signet-mesh/signet/ca/store"
)

// CheckpointParams says who signs a checkpoint and why.
type CheckpointParams struct {
	// Signer signs the checkpoint. Required. ECDSA and RSA keys sign the
	// SHA-256 of the message (RSA with PKCS #1 v1.5), Ed25519 keys the
	// message itself.
	Signer crypto.Signer
	// KeyID is how a verifier finds the public key, for example the key
	// ID of the CA's JWT authority, whose public key is in the bundle.
	// Required.
	KeyID string
	// Reason is the checkpoint's DetailReason. Empty means
	// ReasonPeriodic.
	Reason string
	// Actor asked for the checkpoint (the admin of an export); empty for
	// the CA's own.
	Actor string
}

// Checkpoint appends a checkpoint record to tx's log: the CA's signature
// over the chain's head, so that a verifier holding the public key can
// tell the records up to it are those the CA wrote, and an export that
// stops before its final checkpoint is truncated. The record's details
// hold the reason and first_seq, the oldest record the log holds.
//
// Signing happens inside the transaction, which holds the store's one
// writer: use a local key, or accept that a remote signer (KMS) stalls
// writes for one signing round trip per checkpoint.
func Checkpoint(tx store.Tx, p CheckpointParams, now time.Time) (Record, error) {
	return checkpoint(tx, p, nil, now)
}

// checkpoint is Checkpoint with extra details (an export's filter).
func checkpoint(tx store.Tx, p CheckpointParams, extra map[string]string, now time.Time) (Record, error) {
	if p.Signer == nil || p.KeyID == "" {
		return Record{}, invalidf("a checkpoint needs a signer and a key ID")
	}
	reason := p.Reason
	if reason == "" {
		reason = ReasonPeriodic
	}
	details := map[string]string{DetailReason: reason}
	for k, v := range extra {
		details[k] = v
	}
	r, err := prepare(Record{
		Type:    TypeCheckpoint,
		Outcome: OutcomeSuccess,
		Actor:   p.Actor,
		Details: details,
		KeyID:   p.KeyID,
	}, now)
	if err != nil {
		return Record{}, err
	}
	if err := chain(tx, &r); err != nil {
		return Record{}, err
	}
	oldest, ok, err := first(tx, 0)
	if err != nil {
		return Record{}, err
	}
	firstSeq := r.Seq // the checkpoint is the log's first record
	if ok {
		firstSeq = oldest.Seq
	}
	r.Details[DetailFirstSeq] = strconv.FormatUint(firstSeq, 10)
	sig, err := sign(p.Signer, signedMessage(&r))
	if err != nil {
		return Record{}, wrapErr(fmt.Errorf("signing checkpoint %d with key %q: %w", r.Seq, p.KeyID, err))
	}
	r.Signature = base64.StdEncoding.EncodeToString(sig)
	r, err = commit(tx, r)
	if err != nil {
		return Record{}, err
	}
	if err := tx.PutMeta(metaLastCheckpoint, binary.BigEndian.AppendUint64(nil, r.Seq)); err != nil {
		return Record{}, wrapErr(fmt.Errorf("recording the last checkpoint: %w", err))
	}
	return r, nil
}

// metaLastCheckpoint is the store meta key of the seq (8 bytes,
// big-endian) of the newest checkpoint: where VerifyTail starts.
const metaLastCheckpoint = "audit_last_checkpoint_seq"

// LastCheckpoint returns the seq of the newest checkpoint, 0 if there is
// none (or it was written before signet kept track of it).
func LastCheckpoint(tx store.Tx) (uint64, error) {
	v, err := tx.GetMeta(metaLastCheckpoint)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, wrapErr(fmt.Errorf("reading the last checkpoint: %w", err))
	}
	if len(v) != 8 {
		return 0, wrapErr(fmt.Errorf("the last checkpoint is %d bytes, want 8: %w", len(v), store.ErrCorrupt))
	}
	return binary.BigEndian.Uint64(v), nil
}

func sign(s crypto.Signer, msg []byte) ([]byte, error) {
	if _, ok := s.Public().(ed25519.PublicKey); ok {
		return s.Sign(rand.Reader, msg, crypto.Hash(0))
	}
	digest := sha256.Sum256(msg)
	return s.Sign(rand.Reader, digest[:], crypto.SHA256)
}

// VerifyCheckpoint checks r's signature with pub (ECDSA, RSA PKCS #1 v1.5
// or Ed25519). It checks only the signature: Verify also checks that r's
// hash and place in the chain are right.
func VerifyCheckpoint(r Record, pub crypto.PublicKey) error {
	if r.Type != TypeCheckpoint {
		return fmt.Errorf("%w: record %d is a %s, not a checkpoint", ErrSignature, r.Seq, r.Type)
	}
	sig, err := base64.StdEncoding.Strict().DecodeString(r.Signature)
	if err != nil {
		return fmt.Errorf("%w: the signature is not base64: %v", ErrSignature, err)
	}
	msg := signedMessage(&r)
	digest := sha256.Sum256(msg)
	var ok bool
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		ok = ecdsa.VerifyASN1(k, digest[:], sig)
	case *rsa.PublicKey:
		ok = rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], sig) == nil
	case ed25519.PublicKey:
		ok = len(k) == ed25519.PublicKeySize && ed25519.Verify(k, msg, sig)
	default:
		return fmt.Errorf("%w: unsupported %T key", ErrSignature, pub)
	}
	if !ok {
		return fmt.Errorf("%w: it does not verify with key %q", ErrSignature, r.KeyID)
	}
	return nil
}

// Keys finds a checkpoint's public key by its key ID; ok is false for a
// key the verifier does not know. A JWT bundle's FindJWTAuthority has this
// shape.
type Keys func(keyID string) (pub crypto.PublicKey, ok bool)

// KeyMap is Keys over a map.
func KeyMap(m map[string]crypto.PublicKey) Keys {
	return func(keyID string) (crypto.PublicKey, bool) {
		k, ok := m[keyID]
		return k, ok
	}
}

// checkpointFilter reports whether checkpoint r ends a filtered export.
func checkpointFilter(r *Record) bool {
	for k := range r.Details {
		if strings.HasPrefix(k, "filter_") {
			return true
		}
	}
	return false
}

// checkpointFirstSeq is r's DetailFirstSeq; ok is false if it has none.
func checkpointFirstSeq(r *Record) (uint64, bool) {
	s, ok := r.Details[DetailFirstSeq]
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

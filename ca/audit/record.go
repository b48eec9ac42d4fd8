package audit

import (
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/signet-mesh/signet/ca/store"
	"github.com/signet-mesh/signet/internal/keyder"
)

// Record is one event of the audit log. The JSON tags are the field names
// of the export (JSON Lines keys, CSV columns); see the package
// documentation for the exact export form and the hash.
type Record struct {
	// Seq numbers the records from 1, without gaps.
	Seq uint64 `json:"seq"`
	// Time is when the change happened, in UTC; exports write it as
	// TimeFormat.
	Time time.Time `json:"time"`
	// Type is what happened: one of the Type constants.
	Type string `json:"type"`
	// Outcome is OutcomeSuccess or OutcomeFailure.
	Outcome string `json:"outcome"`
	// Actor is who made the change: an admin as AdminActor formats it, a
	// node's SPIFFE ID, or empty for the CA itself (rotation, checkpoints).
	Actor string `json:"actor,omitempty"`
	// Subject is the SPIFFE ID the change is about, if any.
	Subject string `json:"subject,omitempty"`
	// Details are the event's facts, keyed by the Detail constants. It is
	// a map, not a struct, so that a verifier built today still hashes
	// the keys a later signet adds.
	Details map[string]string `json:"details,omitempty"`
	// KeyID names the key that signed a checkpoint (empty otherwise).
	KeyID string `json:"key_id,omitempty"`
	// Signature is a checkpoint's signature, standard base64 (empty
	// otherwise).
	Signature string `json:"signature,omitempty"`
	// PrevHash is the previous record's Hash, or GenesisHash for seq 1.
	PrevHash string `json:"prev_hash"`
	// Hash is the lower-case hex SHA-256 of the record's canonical
	// encoding.
	Hash string `json:"hash"`
}

// Event types. A failure is the same type with OutcomeFailure and a
// DetailReason, so that one filter finds every attempt.
const (
	// TypeSVIDIssued: an X509-SVID was signed. Subject is its SPIFFE ID;
	// details: serial, not_before, not_after, public_key_sha256,
	// csr_sha256, entry_id (workload SVIDs), authority_id.
	TypeSVIDIssued = "svid.issued"
	// TypeJWTIssued: a JWT-SVID was signed. Details: key_id of the
	// signing key, audience, not_after, jwt_sha256.
	TypeJWTIssued = "jwt.issued"
	// TypeNodeAttested: a node proved its identity (or failed to: the
	// subject is then what it claimed, if anything). Details: attestor,
	// token_id, serial.
	TypeNodeAttested = "node.attested"
	// TypeNodeRenewed: an attested node renewed its SVID.
	TypeNodeRenewed = "node.renewed"
	// TypeNodeEvicted: an admin removed a node; it must attest again.
	TypeNodeEvicted = "node.evicted"
	// TypeTokenCreated: an admin created a join token. Details: token_id,
	// not_after; never the token itself.
	TypeTokenCreated = "token.created"
	// TypeTokenUsed: a join token was spent by an attestation.
	TypeTokenUsed = "token.used"
	// TypeTokenRevoked: an admin deleted an unused join token. Details:
	// token_id, node_name.
	TypeTokenRevoked = "token.revoked"
	// TypeEntryCreated, TypeEntryUpdated, TypeEntryDeleted: registration
	// entry changes. Details: entry_id, parent_id, selectors.
	TypeEntryCreated = "entry.created"
	TypeEntryUpdated = "entry.updated"
	TypeEntryDeleted = "entry.deleted"
	// TypeAuthorityPrepared ... TypeAuthorityRetired: the steps of a
	// root, intermediate or JWT key rotation (store.AuthorityState).
	// Details: authority_id, kind, not_after, public_key_sha256.
	TypeAuthorityPrepared  = "authority.prepared"
	TypeAuthorityActivated = "authority.activated"
	TypeAuthorityRetiring  = "authority.retiring"
	TypeAuthorityRetired   = "authority.retired"
	// TypeAuthorityImported: an admin imported an upstream-signed root.
	TypeAuthorityImported = "authority.imported"
	// TypeMTLSPolicySet, TypeMTLSPolicyDeleted: mTLS policy changes.
	TypeMTLSPolicySet     = "mtls.policy_set"
	TypeMTLSPolicyDeleted = "mtls.policy_deleted"
	// TypeFederationCreated, TypeFederationDeleted: an admin added or
	// removed a federation relationship. Subject is the other trust
	// domain's ID (spiffe://other.org); details: trust_domain,
	// bundle_endpoint_url, profile, endpoint_spiffe_id.
	TypeFederationCreated = "federation.created"
	TypeFederationDeleted = "federation.deleted"
	// TypeFederationBundleUpdated: a federated trust domain's bundle
	// changed (fetched, or given at creation). Details: trust_domain,
	// sequence, bundle_sha256, x509_authorities. With OutcomeFailure: a
	// fetched bundle was refused (wrong endpoint SPIFFE ID, another trust
	// domain, spiffe_sequence going back, malformed) and the last good one
	// kept; DetailReason says why.
	TypeFederationBundleUpdated = "federation.bundle_updated"
	// TypeCheckpoint: the CA signed the chain up to this record; written
	// only by Checkpoint. Details: reason, first_seq, and the filter of
	// the export it ends.
	TypeCheckpoint = "checkpoint"
	// TypeAuditPruned: records before first_seq were deleted by Prune.
	// Details: before, deleted, first_seq.
	TypeAuditPruned = "audit.pruned"
	// TypeStoreMigrated: the server moved its store to a newer schema on
	// start, in the migration's transaction. Details: from_version,
	// to_version.
	TypeStoreMigrated = "store.migrated"
	// TypeStoreBackedUp: an admin took a backup (signet store backup).
	// Details: backup_created_at, backup_audit_head_seq, bytes.
	TypeStoreBackedUp = "store.backed_up"
	// TypeStoreRestored: the server's first start on a store restored
	// from a backup. What happened between the backup and the restore is
	// not in this store: the SVIDs issued then are missing from the
	// index, and the records after backup_audit_head_seq from this log.
	// Details: backup_created_at, backup_audit_head_seq,
	// backup_audit_head_hash, backup_schema_version, restored_at,
	// svid_gap_from, svid_gap_until, tokens_revoked. A checkpoint with
	// reason "restore" follows it in the same transaction.
	TypeStoreRestored = "store.restored"
)

// types are the record types, in the order Types lists them.
var types = []string{
	TypeSVIDIssued, TypeJWTIssued,
	TypeNodeAttested, TypeNodeRenewed, TypeNodeEvicted,
	TypeTokenCreated, TypeTokenUsed, TypeTokenRevoked,
	TypeEntryCreated, TypeEntryUpdated, TypeEntryDeleted,
	TypeAuthorityPrepared, TypeAuthorityActivated, TypeAuthorityRetiring, TypeAuthorityRetired, TypeAuthorityImported,
	TypeMTLSPolicySet, TypeMTLSPolicyDeleted,
	TypeFederationCreated, TypeFederationDeleted, TypeFederationBundleUpdated,
	TypeCheckpoint, TypeAuditPruned,
	TypeStoreMigrated, TypeStoreBackedUp, TypeStoreRestored,
}

// Types returns every record type, for filters to check against and
// `signet audit export --help` to list.
func Types() []string { return slices.Clone(types) }

// IsType reports whether t is a record type.
func IsType(t string) bool { return slices.Contains(types, t) }

// Outcomes.
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure"
)

// Detail keys. Times are TimeFormat (FormatTime), digests lower-case hex
// SHA-256, serials lower-case hex as in store.SVIDRecord.
const (
	DetailSerial          = "serial"
	DetailNotBefore       = "not_before"
	DetailNotAfter        = "not_after"
	DetailPublicKeySHA256 = "public_key_sha256" // PublicKeySHA256
	DetailCSRSHA256       = "csr_sha256"        // SHA256Hex of the CSR's DER
	DetailJWTSHA256       = "jwt_sha256"
	DetailAudience        = "audience"
	DetailEntryID         = "entry_id"
	DetailParentID        = "parent_id"
	DetailSelectors       = "selectors" // comma-separated, sorted
	DetailAuthorityID     = "authority_id"
	DetailKind            = "kind"
	DetailKeyID           = "key_id"
	DetailAttestor        = "attestor"
	DetailTokenID         = "token_id"
	// Node lifecycle: the node name a join token is for, the address an
	// attestation came from, the incarnation (one attestation) of a node,
	// and the node (and its incarnation) a forced token replaces.
	DetailNodeName            = "node_name"
	DetailPeerAddress         = "peer_address"
	DetailIncarnation         = "incarnation"
	DetailReplaces            = "replaces"
	DetailReplacedIncarnation = "replaced_incarnation"
	// Kubernetes node attestation (k8s_psat).
	DetailCluster        = "cluster"
	DetailNodeUID        = "node_uid"
	DetailNamespace      = "namespace"
	DetailServiceAccount = "service_account"
	DetailPodName        = "pod_name"
	DetailPodUID         = "pod_uid"
	// DetailChanged lists the fields an update changed (comma-separated).
	DetailChanged = "changed"
	// DetailReason says why a change failed, or why a checkpoint was
	// made (the Reason constants).
	DetailReason = "reason"
	// DetailMethod is the admin API method of an admin change.
	DetailMethod = "method"
	// mTLS policy changes: the policy's ID, mode ("STRICT", ...), port
	// (0: every port), exempt ports (comma-separated) and dry run
	// ("true"/"false"); forced_over lists the workloads (comma-separated)
	// that still received plaintext when STRICT was forced on them.
	DetailPolicyID    = "policy_id"
	DetailMode        = "mode"
	DetailPort        = "port"
	DetailExemptPorts = "exempt_ports"
	DetailDryRun      = "dry_run"
	DetailForcedOver  = "forced_over"
	// Federation: the other trust domain, its endpoint, the endpoint
	// profile and SPIFFE ID, and the bundle's spiffe_sequence, digest (of
	// its X.509 authorities' DER, in order) and root count.
	DetailTrustDomain       = "trust_domain"
	DetailBundleEndpointURL = "bundle_endpoint_url"
	DetailProfile           = "profile"
	DetailEndpointSPIFFEID  = "endpoint_spiffe_id"
	DetailSequence          = "sequence"
	DetailBundleSHA256      = "bundle_sha256"
	DetailX509Authorities   = "x509_authorities"
	// DetailFederatesWith, on entry records, lists the trust domains the
	// entry federates with (comma-separated, sorted).
	DetailFederatesWith = "federates_with"
	// DetailFirstSeq, on a checkpoint, is the seq of the oldest record the
	// log held; on audit.pruned, the oldest one left.
	DetailFirstSeq = "first_seq"
	DetailBefore   = "before"
	DetailDeleted  = "deleted"
	// The filter of the export a checkpoint ends (absent: unfiltered).
	DetailFilterSince    = "filter_since"
	DetailFilterUntil    = "filter_until"
	DetailFilterTypes    = "filter_types" // comma-separated
	DetailFilterSPIFFEID = "filter_spiffe_id"
	// Store schema migrations, backups and restores.
	DetailFromVersion         = "from_version"
	DetailToVersion           = "to_version"
	DetailBackupCreatedAt     = "backup_created_at"
	DetailBackupAuditHeadSeq  = "backup_audit_head_seq"
	DetailBackupAuditHeadHash = "backup_audit_head_hash"
	DetailBackupSchemaVersion = "backup_schema_version"
	DetailBytes               = "bytes"
	DetailRestoredAt          = "restored_at"
	DetailSVIDGapFrom         = "svid_gap_from"
	DetailSVIDGapUntil        = "svid_gap_until"
	DetailTokensRevoked       = "tokens_revoked"
)

// Checkpoint reasons (DetailReason of a checkpoint).
const (
	ReasonPeriodic = "periodic"
	ReasonExport   = "export"
	// ReasonRestore closes the records of a restore (TypeStoreRestored).
	ReasonRestore = "restore"
	// ReasonStoreRestored is the DetailReason of the token.revoked
	// records of a restore: a token unused in the backup may have been
	// spent after it.
	ReasonStoreRestored = "store restored from a backup"
)

const (
	// TimeFormat is how records and exports write times: RFC 3339 in UTC
	// with exactly nine fractional digits, so that every instant has one
	// spelling and exports sort as text.
	TimeFormat = "2006-01-02T15:04:05.000000000Z07:00"
	// GenesisHash is the PrevHash of record 1.
	GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"
)

// Limits.
const (
	// maxRecordBytes bounds a record's canonical encoding. Records carry
	// identifiers and digests, never payloads, so real ones are well
	// under 2 KiB; the bound keeps an export's lines, and what a verifier
	// must buffer, small.
	maxRecordBytes = 16 << 10
	// maxDetails bounds the details of a record, for the same reason.
	maxDetails = 64
)

// Domain separation of the two digests a record is part of, so that a
// record hash can never be passed off as a signed checkpoint message or
// the other way round. See doc.go.
const (
	hashDomain = "signet-audit-v1\n"
	signDomain = "signet-audit-checkpoint-v1\n"
)

// FormatTime formats t as records write times (TimeFormat, in UTC).
func FormatTime(t time.Time) string { return t.UTC().Format(TimeFormat) }

// AdminActor is the Actor of a change an admin made over the admin API:
// "uid:<uid>(<user name>)", from the caller's peer credentials.
func AdminActor(uid uint32, user string) string {
	return fmt.Sprintf("uid:%d(%s)", uid, user)
}

// SHA256Hex is the lower-case hex SHA-256 of b: the form of every digest
// detail (DetailCSRSHA256, DetailJWTSHA256).
func SHA256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// PublicKeySHA256 is the DetailPublicKeySHA256 of pub: the SHA-256 of its
// PKIX (SubjectPublicKeyInfo) DER, which identifies a key whatever
// certificate carries it.
func PublicKeySHA256(pub crypto.PublicKey) (string, error) {
	der, err := keyder.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", wrapErr(fmt.Errorf("hashing public key: %w", err))
	}
	return SHA256Hex(der), nil
}

// ComputeHash returns the hash r should have: the lower-case hex SHA-256
// of its canonical encoding. r.Hash itself is not part of it.
func ComputeHash(r *Record) string {
	h, _ := hashCanonical(r)
	return h
}

// hashCanonical returns r's hash and the size of its canonical encoding.
func hashCanonical(r *Record) (hash string, size int) {
	buf := make([]byte, 0, 1024)
	buf = appendCanonical(append(buf, hashDomain...), r, true)
	sum := sha256.Sum256(buf)
	return hex.EncodeToString(sum[:]), len(buf) - len(hashDomain)
}

// signedMessage is what a checkpoint's signature covers.
func signedMessage(r *Record) []byte {
	return appendCanonical([]byte(signDomain), r, false)
}

// appendCanonical appends r's fields to b in their canonical encoding:
// each field as a 4-byte big-endian length then its UTF-8 bytes, in a
// fixed order, the details as their count then their key/value pairs in
// key order. withSignature leaves the signature out for signing. doc.go
// is the specification; keep the two in step.
func appendCanonical(b []byte, r *Record, withSignature bool) []byte {
	var num [20]byte
	b = appendField(b, strconv.AppendUint(num[:0], r.Seq, 10))
	var ts [40]byte
	b = appendField(b, r.Time.UTC().AppendFormat(ts[:0], TimeFormat))
	b = appendStringField(b, r.Type)
	b = appendStringField(b, r.Outcome)
	b = appendStringField(b, r.Actor)
	b = appendStringField(b, r.Subject)
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Details)))
	for _, k := range sortedKeys(r.Details) {
		b = appendStringField(b, k)
		b = appendStringField(b, r.Details[k])
	}
	b = appendStringField(b, r.KeyID)
	if withSignature {
		b = appendStringField(b, r.Signature)
	}
	return appendStringField(b, r.PrevHash)
}

func appendField(b, f []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
	return append(b, f...)
}

func appendStringField(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// sortedKeys returns m's keys in byte order.
func sortedKeys(m map[string]string) []string {
	if len(m) == 0 {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// prepare turns what a caller gave Append into a record ready for the
// chain (without seq, prev hash and hash): valid UTF-8 everywhere, since
// exports are text and a replaced byte would break the hash, the time in
// UTC, and details the caller can no longer change.
func prepare(r Record, now time.Time) (Record, error) {
	if now.IsZero() {
		return Record{}, invalidf("the time is zero")
	}
	r.Time = now.UTC()
	r.Type = validUTF8(r.Type)
	r.Outcome = validUTF8(r.Outcome)
	r.Actor = validUTF8(r.Actor)
	r.Subject = validUTF8(r.Subject)
	r.KeyID = validUTF8(r.KeyID)
	if len(r.Details) > 0 {
		// Copied only to repair invalid UTF-8: otherwise the caller's
		// map, which Append only reads, is the record's.
		valid := true
		for k, v := range r.Details {
			valid = valid && utf8.ValidString(k) && utf8.ValidString(v)
		}
		if !valid {
			d := make(map[string]string, len(r.Details))
			for k, v := range r.Details {
				d[validUTF8(k)] = validUTF8(v)
			}
			r.Details = d
		}
	} else {
		r.Details = nil
	}
	if !validName(r.Type) {
		return Record{}, invalidf("type %q is not a dotted lower-case name", r.Type)
	}
	if r.Outcome != OutcomeSuccess && r.Outcome != OutcomeFailure {
		return Record{}, invalidf("outcome %q is neither %q nor %q", r.Outcome, OutcomeSuccess, OutcomeFailure)
	}
	if len(r.Details) > maxDetails {
		return Record{}, invalidf("%d details, more than %d", len(r.Details), maxDetails)
	}
	for k := range r.Details {
		if !validName(k) || strings.Contains(k, ".") {
			return Record{}, invalidf("detail key %q is not a lower-case name", k)
		}
	}
	return r, nil
}

func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// validName reports whether s is lower-case letters, digits and '_' in
// dot-separated parts, each starting with a letter: safe in a CSV cell, a
// filter flag and a file name.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for part := range strings.SplitSeq(s, ".") {
		if part == "" || part[0] < 'a' || part[0] > 'z' {
			return false
		}
		for i := range len(part) {
			c := part[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
				return false
			}
		}
	}
	return true
}

func toStore(r *Record) *store.AuditRecord {
	return &store.AuditRecord{
		Seq:       r.Seq,
		Time:      r.Time,
		Type:      r.Type,
		Outcome:   r.Outcome,
		Actor:     r.Actor,
		Subject:   r.Subject,
		Details:   r.Details,
		KeyID:     r.KeyID,
		Signature: r.Signature,
		PrevHash:  r.PrevHash,
		Hash:      r.Hash,
	}
}

func fromStore(r *store.AuditRecord) Record {
	return Record{
		Seq:       r.Seq,
		Time:      r.Time.UTC(),
		Type:      r.Type,
		Outcome:   r.Outcome,
		Actor:     r.Actor,
		Subject:   r.Subject,
		Details:   r.Details,
		KeyID:     r.KeyID,
		Signature: r.Signature,
		PrevHash:  r.PrevHash,
		Hash:      r.Hash,
	}
}

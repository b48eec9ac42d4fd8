package store

import (
	"context"
	"time"
)

// Store is the CA's persistent state. The bbolt implementation (Open) is the
// default; any other backend (etcd) must pass storetest.Run.
//
// All methods are safe for concurrent use. Every state change is one
// transaction: a function passed to Update or Batch either commits all of
// its writes or none of them. Errors are this package's sentinels (wrapped
// with context) for conditions callers act on; anything else is an I/O
// failure of the backend.
type Store interface {
	// View runs fn in a read-only transaction. Writes fail with ErrReadOnly.
	View(ctx context.Context, fn func(Tx) error) error
	// Update runs fn in a read-write transaction and commits it durably
	// when fn returns nil. When fn returns an error nothing is written and
	// the error is returned as is.
	Update(ctx context.Context, fn func(Tx) error) error
	// Batch is Update for hot paths: concurrent calls may be committed
	// together (group commit), so one fsync serves many callers. fn may be
	// called more than once and must only change state through tx. When fn
	// returns an error, Batch returns it and fn's writes are discarded; the
	// other functions of the group still commit.
	Batch(ctx context.Context, fn func(Tx) error) error
	// Subscribe returns a channel that receives a value after each
	// committed transaction that called NextRevision (entries or bundle
	// changed), coalesced (buffer 1, never blocks the committer), and a
	// cancel func. Stream handlers use it to push changes to agents
	// without polling: on each value, read the state in a new View. The
	// channel is closed by cancel (which may be called more than once) and
	// when the store is closed.
	Subscribe() (<-chan struct{}, func())
	// SubscribeChanges is Subscribe that says what changed: fn is called
	// with the Change of each committed transaction that called
	// NextRevision (a group commit's may be merged into one), from the
	// committing goroutine or the backend's watch, so that a stream reads
	// only when a change can concern it. fn must be quick: it must not
	// block nor start a transaction. fn is not called after cancel
	// returns; the returned channel is closed when the store closes.
	SubscribeChanges(fn func(Change)) (<-chan struct{}, func())
	// SubscribeAudit is Subscribe for the audit log: its channel receives a
	// value after each committed transaction that called AppendAudit.
	// It is apart from Subscribe because every issuance appends a
	// record: agent streams must not wake for those. Audit followers
	// (export in follow mode) read the new records in a new View.
	SubscribeAudit() (<-chan struct{}, func())
	// Close releases the store. It is idempotent; calls after Close fail
	// with ErrClosed.
	Close() error
}

// Tx is one transaction. It must not be used after the function it was
// passed to returns, nor from several goroutines at once. Returned records
// are copies the caller may keep and modify.
type Tx interface {
	// GetAuthority returns ErrNotFound when id is unknown.
	GetAuthority(id string) (*Authority, error)
	// PutAuthority creates or replaces an authority.
	PutAuthority(a *Authority) error
	// ListAuthorities returns every authority, oldest first (by CreatedAt,
	// then ID).
	ListAuthorities() ([]*Authority, error)

	// CreateEntry stores a new entry. It fails with ErrAlreadyExists when
	// the id is taken or an entry with the same SPIFFE ID, parent ID and
	// selector set exists. The caller sets e.Revision (see NextRevision).
	CreateEntry(e *Entry) error
	// UpdateEntry replaces an existing entry (ErrNotFound otherwise).
	UpdateEntry(e *Entry) error
	// GetEntry returns ErrNotFound when id is unknown.
	GetEntry(id string) (*Entry, error)
	// DeleteEntry returns ErrNotFound when id is unknown.
	DeleteEntry(id string) error
	// ListEntries returns the entries matching f, ordered by ID. With
	// f.After and f.Limit it is one page of a keyset-paged listing: it
	// reads from After on and stops at Limit, so a page costs its size,
	// not the registry's (through the parent index when f.ParentID is
	// set; a SPIFFEID filter alone reads on until Limit matches).
	ListEntries(f EntryFilter) ([]*Entry, error)

	// PutNode creates or replaces a node. A node attested again after
	// its eviction loses its eviction record.
	PutNode(n *Node) error
	// GetNode returns ErrNotFound when the node is unknown (or evicted).
	GetNode(spiffeID string) (*Node, error)
	// DeleteNode returns ErrNotFound when the node is unknown. It keeps no
	// trace; EvictNode does.
	DeleteNode(spiffeID string) error
	// ListNodes returns every node ordered by SPIFFE ID.
	ListNodes() ([]*Node, error)
	// ListNodesAfter returns the nodes with a SPIFFE ID after after (from
	// the first when it is empty), in order, at most limit of them (all
	// when limit <= 0): one page of a keyset-paged listing, read from
	// its start key.
	ListNodesAfter(after string, limit int) ([]*Node, error)
	// EvictNode removes the node and keeps an eviction record of it (the
	// node with EvictedAt set to at), so the CA can tell an evicted node
	// from an unknown one. ErrNotFound when the node is unknown.
	EvictNode(spiffeID string, at time.Time) (*Node, error)
	// GetEvictedNode returns the eviction record of a node that was
	// evicted and has not attested since; ErrNotFound otherwise.
	GetEvictedNode(spiffeID string) (*Node, error)
	// ListEvictedNodes returns the eviction records, ordered by SPIFFE ID.
	ListEvictedNodes() ([]*Node, error)
	// ListEvictedNodesAfter is ListNodesAfter for the eviction records.
	ListEvictedNodesAfter(after string, limit int) ([]*Node, error)
	// PruneEvictedNodes deletes the eviction records of nodes whose last
	// SVID (Node.ExpiresAt) expired before t, and returns how many.
	PruneEvictedNodes(t time.Time) (int, error)

	// PutJoinToken stores a token under its Hash; ErrAlreadyExists if the
	// hash is taken.
	PutJoinToken(t *JoinToken) error
	// GetJoinToken returns the token with that hash without using it,
	// used or not (UsedAt says); ErrNotFound when it is unknown. Callers
	// that prepare work for a token (sign a node SVID) read it here first
	// and take it in the transaction that commits the work.
	GetJoinToken(hash string) (*JoinToken, error)
	// TakeJoinToken marks the token with that hash used (UsedAt = at)
	// and returns it, so a token is used at most once. ErrNotFound when
	// it is unknown or was already taken. The used token is kept until
	// PruneJoinTokens, so a second attempt can be told it was used.
	TakeJoinToken(hash string, at time.Time) (*JoinToken, error)
	// DeleteJoinToken deletes an unused token (revocation); ErrNotFound
	// when it is unknown or was used.
	DeleteJoinToken(hash string) error
	// ListJoinTokens returns the unused tokens, ordered by hash.
	ListJoinTokens() ([]*JoinToken, error)
	// PruneJoinTokens deletes the tokens, used or not, that expired
	// before t, and returns how many.
	PruneJoinTokens(t time.Time) (int, error)

	// PutSVID records an issued certificate in the SVID index and, unless
	// its entry and node already have a later one (by NotBefore; the last
	// recorded of the same second wins), makes it their current SVID.
	PutSVID(r *SVIDRecord) error
	// ForEachCurrentSVID calls fn for the current SVID of each entry and
	// node (and each node's current node SVID, EntryID empty), in no
	// defined order: what agents serve now, whatever was issued before.
	// Its cost grows with entries and nodes, not with the SVIDs ever
	// issued. Records of deleted entries and evicted nodes stay until
	// they expire and are pruned; callers filter them. An error from fn
	// stops the walk and is returned.
	ForEachCurrentSVID(fn func(*SVIDRecord) error) error
	// GetSVID returns ErrNotFound when the serial is unknown. It may walk
	// the whole index: the index is kept in expiry order.
	GetSVID(serial string) (*SVIDRecord, error)
	// ForEachSVID calls fn for every indexed certificate, ordered by
	// expiry (NotAfter, to the second), then order of issuance, without
	// loading them all at once. An error from fn stops the
	// walk and is returned.
	ForEachSVID(fn func(*SVIDRecord) error) error
	// ForEachSVIDFrom is ForEachSVID from the first certificate that
	// expires in the second of from or later: a page of a listing in
	// expiry order starts where the last one ended, without walking what
	// came before.
	ForEachSVIDFrom(from time.Time, fn func(*SVIDRecord) error) error
	// PruneSVIDs deletes the records whose NotAfter is before t, from the
	// SVID index and the current index, and returns how many it deleted
	// from the SVID index.
	PruneSVIDs(t time.Time) (int, error)

	// NextRevision increments the store's revision counter and returns the
	// new value. Changes that agents must see (entries, bundle) take a
	// revision, so a stream can tell old from new.
	NextRevision() (int64, error)
	// Revision returns the current counter without changing it.
	Revision() (int64, error)

	// GetMeta and PutMeta hold small singletons (bundle revision, schema
	// version, settings). GetMeta returns ErrNotFound for an unset key.
	GetMeta(key string) ([]byte, error)
	PutMeta(key string, value []byte) error

	// PutMTLSPolicy creates or replaces the policy with p.ID. The caller
	// sets p.Revision (see NextRevision) so agents see the change.
	PutMTLSPolicy(p *MTLSPolicy) error
	// GetMTLSPolicy returns ErrNotFound when id is unknown.
	GetMTLSPolicy(id string) (*MTLSPolicy, error)
	// DeleteMTLSPolicy returns ErrNotFound when id is unknown.
	DeleteMTLSPolicy(id string) error
	// ListMTLSPolicies returns every policy ordered by ID.
	ListMTLSPolicies() ([]*MTLSPolicy, error)

	// The audit log is append-only and ordered by AuditRecord.Seq. The
	// store keeps its structure (seqs follow each other, each record
	// names its predecessor's hash) but not its meaning: package audit
	// computes the hashes, signs checkpoints and decides what to prune.
	// Append audit records in the transaction of the change they record,
	// so that either both commit or neither does.

	// AuditHead returns the Seq and Hash of the newest audit record ever
	// appended, or (0, "") before the first one. The head is kept apart
	// from the records, so it survives DeleteAuditBefore and seqs never
	// restart.
	AuditHead() (seq uint64, hash string, err error)
	// AppendAudit stores r as the newest audit record and makes it the
	// head. r.Seq must be the head's seq + 1 and, unless r is the first
	// record, r.PrevHash the head's hash; otherwise it fails with
	// ErrConflict and writes nothing. The store does not compute or check
	// r.Hash.
	AppendAudit(r *AuditRecord) error
	// ForEachAudit calls fn for every audit record with Seq >= fromSeq,
	// in Seq order, decoding one at a time: a walk over millions of
	// records holds one in memory. An error from fn stops the walk and is
	// returned as is. fn must not write to the audit log.
	ForEachAudit(fromSeq uint64, fn func(*AuditRecord) error) error
	// DeleteAuditBefore deletes the audit records with Seq < seq and
	// returns how many it deleted. The head is unchanged. Only package
	// audit's Prune should call it: it keeps the rest verifiable.
	DeleteAuditBefore(seq uint64) (int, error)
}

// AuthorityKind says what an authority signs.
type AuthorityKind string

const (
	// KindRoot is a trust anchor: it is in the bundle and signs
	// intermediates.
	KindRoot AuthorityKind = "root"
	// KindIntermediate is a per-server CA certificate that signs SVIDs.
	KindIntermediate AuthorityKind = "intermediate"
	// KindJWT is a key that signs JWT-SVIDs; its public key is in the
	// bundle.
	KindJWT AuthorityKind = "jwt"
)

// AuthorityState is a step of an authority's life:
// prepared -> active -> retiring -> retired.
type AuthorityState string

const (
	// StatePrepared: in the bundle, not yet signing.
	StatePrepared AuthorityState = "prepared"
	// StateActive: in the bundle and signing.
	StateActive AuthorityState = "active"
	// StateRetiring: still in the bundle, no longer signing.
	StateRetiring AuthorityState = "retiring"
	// StateRetired: out of the bundle.
	StateRetired AuthorityState = "retired"
)

// Authority is a signing key and, for X.509 kinds, its certificate.
type Authority struct {
	ID    string         `json:"id"`
	Kind  AuthorityKind  `json:"kind"`
	State AuthorityState `json:"state"`
	// CertDER is the certificate (root, intermediate). For KindJWT it is
	// the PKIX public key.
	CertDER []byte `json:"cert_der"`
	// UpstreamChainDER holds the certificates above CertDER when it was
	// imported under an organisation's own PKI, nearest first.
	UpstreamChainDER [][]byte `json:"upstream_chain_der,omitempty"`
	// KeyRef names the private key: a path (relative to the data dir) of
	// an encrypted PEM file for soft keys, or a KMS URI.
	KeyRef  string `json:"key_ref"`
	KeyType string `json:"key_type"`
	// ParentID is the authority that signed this one (empty for roots).
	ParentID       string    `json:"parent_id,omitempty"`
	NotBefore      time.Time `json:"not_before"`
	NotAfter       time.Time `json:"not_after"`
	CreatedAt      time.Time `json:"created_at"`
	StateChangedAt time.Time `json:"state_changed_at"`
	// BundleRevision is the bundle revision at which a root entered the
	// trust bundle (prepare); an agent that reported applying it or a later
	// one trusts the root. Zero for roots present since the first start.
	BundleRevision int64 `json:"bundle_revision,omitempty"`
	// CrossSignedDER is, for an intermediate, the same certificate issued
	// by the root named in CrossSignedBy: a root on its way out of the
	// bundle, so that peers still trusting only that root accept what the
	// intermediate signs.
	CrossSignedDER []byte `json:"cross_signed_der,omitempty"`
	CrossSignedBy  string `json:"cross_signed_by,omitempty"`
	// Imported marks a root or CA certificate that came from the
	// organisation's PKI rather than being created by signet; the
	// automatic root schedule never replaces one.
	Imported bool `json:"imported,omitempty"`
	// ServerName names the CA server an intermediate or JWT key belongs
	// to: each server keeps its own, with a key made on its own machine,
	// so that several servers can share one store. Empty (records written
	// before servers were named) reads as the default server. Roots are
	// shared and leave it empty.
	ServerName string `json:"server_name,omitempty"`
}

// Entry is a registration entry: which workloads on which node get which
// SPIFFE ID.
type Entry struct {
	ID       string `json:"id"`
	SPIFFEID string `json:"spiffe_id"`
	ParentID string `json:"parent_id"`
	// Selectors are "type:value" strings. The store keeps them sorted and
	// without duplicates, whatever order they were given in.
	Selectors []string      `json:"selectors"`
	X509TTL   time.Duration `json:"x509_ttl"`
	JWTTTL    time.Duration `json:"jwt_ttl"`
	DNSNames  []string      `json:"dns_names,omitempty"`
	Revision  int64         `json:"revision"`
	CreatedAt time.Time     `json:"created_at"`
	// FederatesWith names the trust domains ("other.org") whose
	// federated bundles the entry's workloads get.
	FederatesWith []string `json:"federates_with,omitempty"`
}

// EntryFilter selects entries; empty fields match everything.
type EntryFilter struct {
	ParentID string
	SPIFFEID string
	// After, when set, selects the entries with an ID after it: the
	// start key of a page.
	After string
	// Limit, when positive, is the most entries returned: a page's size.
	Limit int
}

// Node is an attested agent.
type Node struct {
	SPIFFEID string `json:"spiffe_id"`
	// Attestor is how the node proved itself ("join_token", "k8s_psat").
	Attestor string `json:"attestor"`
	// Serial of the node's current SVID, lower-case hex.
	Serial                string    `json:"serial"`
	AttestedAt            time.Time `json:"attested_at"`
	ExpiresAt             time.Time `json:"expires_at"`
	AppliedBundleRevision int64     `json:"applied_bundle_revision"`
	// Incarnation names one attestation of the node: a random ID that
	// every node SVID of that attestation carries (ca/api). An SVID of
	// another incarnation (before an eviction, or a forced token's
	// takeover) no longer speaks for the node. Empty for nodes attested
	// before incarnations existed, whose SVIDs carry none.
	Incarnation string `json:"incarnation,omitempty"`
	// EvictedAt is set on eviction records only (EvictNode).
	EvictedAt time.Time `json:"evicted_at,omitzero"`
	// Selectors are what the node attestor found about the node
	// ("k8s_psat:cluster:prod", ...), sorted; none for join tokens.
	Selectors []string `json:"selectors,omitempty"`
	// AttestKeySHA256 is the SHA-256 of the public key (PKIX DER) the
	// node attested with: an agent whose answer was lost (a timeout under
	// load) may retry with its spent token and the same key, and gets
	// the same attestation back, not a refusal (ca/api AttestNode).
	AttestKeySHA256 string `json:"attest_key_sha256,omitempty"`
}

// JoinToken is a single-use node credential. Only its SHA-256 is stored.
type JoinToken struct {
	// Hash is the lower-case hex SHA-256 of the secret token.
	Hash string `json:"hash"`
	// ID is the public name of the token, used in the node's SPIFFE ID.
	ID        string    `json:"id"`
	SPIFFEID  string    `json:"spiffe_id"`
	ExpiresAt time.Time `json:"expires_at"`
	CreatedAt time.Time `json:"created_at"`
	// Replaces is the live node a forced token will supersede (the
	// operator chose to take over its name); empty otherwise.
	Replaces string `json:"replaces,omitempty"`
	// UsedAt is when the token was taken; zero while it is unused.
	UsedAt time.Time `json:"used_at,omitzero"`
}

// SVIDRecord indexes one issued certificate.
type SVIDRecord struct {
	// Serial is lower-case hex without leading zeros stripped: 32 digits
	// for signet's 128-bit serials.
	Serial   string `json:"serial"`
	SPIFFEID string `json:"spiffe_id"`
	// NodeID is the node that requested it.
	NodeID string `json:"node_id"`
	// EntryID is empty for node SVIDs.
	EntryID     string    `json:"entry_id,omitempty"`
	AuthorityID string    `json:"authority_id"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
}

// AuditRecord is one record of the audit log as stored. Package audit
// owns the meaning of the fields and how Hash is computed; its Record is
// the exported form. Unlike the other records it is not stored as JSON
// (see encodeAudit).
type AuditRecord struct {
	// Seq numbers records from 1 with no gaps; it is the record's key.
	Seq uint64
	// Time is when the change happened; it is read back in UTC.
	Time    time.Time
	Type    string
	Outcome string
	Actor   string
	Subject string
	// Details are the event's facts (serial, entry ID, digests). An
	// empty map is read back as nil.
	Details map[string]string
	// KeyID and Signature are set on checkpoints only.
	KeyID     string
	Signature string
	// PrevHash is the previous record's Hash; Hash covers every other
	// field. Both are lower-case hex.
	PrevHash string
	Hash     string
}

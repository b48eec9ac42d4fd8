// Package api implements the CA's two gRPC services: the node API that agents
// call over TLS (signet.node.v1.NodeService) and the admin API that the CLI
// calls over a Unix socket (signet.admin.v1.AdminService, with
// signet.admin.v1.FederationService next to it on the same socket and
// behind the same peer-credential check, over package federation).
//
// Both are thin: they authenticate the caller, validate input, and turn one
// request into one store transaction plus signing by package ca. Errors
// become gRPC statuses here, in one place (see status.go), and are logged
// once.
//
//	node := api.NewNodeService(api.NodeConfig{Store: st, CA: c, TrustDomain: td})
//	admin := api.NewAdminService(api.AdminConfig{Store: st, TrustDomain: td, AdminUIDs: []uint32{0}})
//	nodev1.RegisterNodeServiceServer(tlsServer, node)
//	adminv1.RegisterAdminServiceServer(unixServer, admin)
//	grpc.NewServer(grpc.Creds(peercred.TransportCredentials()), admin.ServerOptions()...)
//
// # Caller identity
//
// Agents are identified only by the node SVID they present in the TLS
// handshake, verified against the current bundle, and only while it speaks
// for the node's current incarnation: each attestation gives the node a
// new incarnation ID that every node SVID of that attestation carries
// (ca.X509SVIDParams.NodeIncarnation), renewals included, so a connection
// opened before a renewal keeps working. Evicting a node (its record moves
// to an eviction record) or attesting its name again with a forced token
// cuts the old SVIDs off at once, with no grace window. A refused node
// gets nodeapi.RejectNode with the reason (evicted, superseded, unknown),
// which the agent reads with nodeapi.NodeRejection. Admins are identified
// by the kernel's peer credentials on the admin socket.
//
// # Node lifecycle
//
// CreateJoinToken refuses the name of a node that is attested and not
// evicted (FailedPrecondition naming the node, `signet node evict` and
// --force); a forced token records the node it replaces, and AttestNode
// refuses any other token for a live name. Used tokens are kept (marked
// used) until they expire, so a second attempt is told so. Every failed
// attestation is logged and audited with the caller's address and the
// node name the token was for. ListJoinTokens never shows secrets (only
// their hashes are stored); RevokeJoinToken deletes unused tokens.
//
// # Kubernetes
//
// AttestNode with k8s_psat (node_k8s.go) checks the agent pod's token with
// ca/k8spsat and records the node as
// spiffe://<td>/signet/agent/k8s_psat/<cluster>/<node-uid>, with its
// selectors; a new agent pod on the node attests again, superseding the
// old incarnation. Such a node mints the entries parented by itself and by
// its cluster (spiffe://<td>/signet/cluster/<name>, accepted as a parent
// when the cluster is configured). In a cluster with automatic identities
// (node_auto.go) SyncEntries adds one made-up entry per namespace and
// service account on the node (id auto:<ns>:<sa>), and MintX509SVIDs and
// MintJWTSVID sign one only after the API server says such a pod runs on
// the asking node; a refusal is audited.
//
// # Limits and errors
//
// Input limits are checked before anything is signed or stored, each with
// an InvalidArgument that names the limit: SPIFFE IDs (2048 bytes) and
// trust domains (255) as the SPIFFE standard has them, selectors and DNS
// names per entry (package registration), JWT-SVID audiences
// (nodeapi.MaxJWTAudiences, the agent's Workload API uses the same), and
// DNS names that are wildcards or IP addresses unless the request allows
// them. A store error a caller can act on keeps its cause: a record too
// large (InvalidArgument), a full disk (ResourceExhausted), a concurrent
// change (Aborted), a broken audit chain (DataLoss naming the seq).
//
// # mTLS policies and readiness for STRICT
//
// SetMTLSPolicy, ListMTLSPolicies and DeleteMTLSPolicy keep the policy set
// in the store (one policy per scope and port; its ID is derived from them,
// so setting a scope again replaces its policy). Every change takes a
// revision, so each SyncEntries stream wakes and sends the whole set again;
// the first message of a stream always carries it. The effective mode of a
// workload is internal/mtlspolicy.Effective, the same function the agents
// run.
//
// Agents report their proxies' inbound connection counts in ReportStatus:
// deltas, per workload and port, by kind (mTLS, plaintext, refused or
// would-be-refused) with the plaintext sources. Counts for a workload the
// node does not parent are dropped. They are kept in memory only, on the
// shared Connections, in a sliding window (Connections.SetMTLSWindow,
// default DefaultMTLSWindow: 10 minutes) cut into 20 slots. GetMTLSStatus
// sums the window per workload: a workload is ready for STRICT when it saw
// no plaintext and nothing refused. A change of the policy set that would
// make a workload refuse plaintext it received in the window (on a port
// where it was not STRICT before, and is now, without dry run or
// exemption) is refused with FailedPrecondition naming the workloads and
// their sources, unless forced; both outcomes are audited.
//
// # Backups
//
// StoreService (signet.admin.v1.StoreService, store.go) is served on the
// admin socket beside AdminService, behind the same peer-credential check
// (register it on the server that uses AdminService.ServerOptions). Backup
// streams the file the store's store.Backuper writes, in chunks, then
// audits the backup (store.backed_up) and sends a summary last: a stream
// without the summary is incomplete.
//
// # Fleet scale
//
// No message grows with the registry. SyncEntries splits an update larger
// than nodeapi.MaxSyncMessageBytes (1 MiB) across messages marked more,
// which the agent applies as one; the admin lists are keyset paged
// (page_size, page_token, next_page_token; DefaultPageSize 1000, at most
// MaxPageSize items and MaxPageBytes a page), so a listing followed while
// items come and go returns every item that exists throughout exactly
// once. The store reads each page from its start key (EntryFilter.After
// and Limit, ListNodesAfter, ForEachSVIDFrom): a page costs its size,
// not the registry's. EntryBatchService.DeleteEntries deletes up to MaxDeleteEntries in
// one audited transaction, all or none.
//
// MintX509SVIDs checks CSRs and signs on a fixed set of long-lived signer
// goroutines (signers.go), concurrent calls served in turn, one item each:
// their stacks stay grown, and one CSR never waits for a whole batch.
//
// Admission bounds the concurrent attestations and mint batches of one
// CA; a call over a bound gets ResourceExhausted at once with a RetryInfo
// (nodeapi.Overloaded) sized to the crowd refused, which the agent's
// backoff honours. Each sync message tells the agent how to spread a
// reconnection (connected agents / ReconnectRate) and, with a rotate
// generation, a re-mint window sized to the connected fleet's SVIDs and
// the CPU time a mint takes here (capacity.go). An idle stream waits on the store's
// change notifications: no timer, no poll. A change wakes only the
// streams it concerns (sync_wake.go, over store.Store.SubscribeChanges):
// an entry its parent's node, or every node of a cluster for a cluster
// parent; a node change that node; the bundle, policies, federation and
// settings every stream. NodeService.SyncWakes counts the wakes. A
// change every stream sees is read cheaply by each: a change that wrote no
// entry and no node (store.Change.EntriesUnchanged) sends what changed
// without reading the node's entries again (NodeService.SyncEntryReads
// counts the reads), the bundle is built once per revision and shared
// (sync_shared.go), and so is whether this server signs under the active
// root, which a rotate-now asks (node_rotate.go). An agent's status
// report wakes no stream. Each stream sends on its own, so an agent slow
// to read holds up nobody else.
package api

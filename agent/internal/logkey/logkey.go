// Package logkey holds the log attribute keys of the node agent and every
// package under agent/, in one place, so that one attribute has one name
// in every line: log queries and alerts rely on them (as they rely on the
// metric names in agent/metrics.go). Log SPIFFE IDs, serials and expiries;
// never key material.
package logkey

const (
	// Component names the part of the agent that logs (agent, sync, mint,
	// rotate, nodesvid, report, cache, workloadapi, ...).
	Component = "component"
	// Error is the error that made the line.
	Error = "error"

	// SPIFFEID is a workload's or the node's SPIFFE ID.
	SPIFFEID = "spiffe_id"
	// EntryID is a registration entry's id.
	EntryID = "entry_id"
	// Serial is a certificate's serial, as nodeapi.FormatSerial writes it.
	Serial = "serial"
	// NotAfter is a certificate's expiry.
	NotAfter = "not_after"
	// Hint is a registration entry's hint.
	Hint = "hint"

	// Server is the CA's node API address.
	Server = "server"
	// Socket is the agent's Unix socket (Workload API and SDS).
	Socket = "socket"
	// DataDir is the agent's data directory.
	DataDir = "data_dir"
	// Reason is why something was refused (for a node identity, the
	// CA's nodeapi.Reason).
	Reason = "reason"

	// RetryIn is the delay before a failed call is tried again.
	RetryIn = "retry_in"
	// Count is how many items a line is about.
	Count = "count"
	// SVIDs is a number of SVIDs.
	SVIDs = "svids"

	// Revision is a trust bundle's revision.
	Revision = "revision"
	// Roots is the number of root certificates in a bundle.
	Roots = "roots"
	// KeyID is a JWT authority's key id.
	KeyID = "key_id"
	// RotateGeneration is the CA's rotate generation (root activate
	// --rotate-now).
	RotateGeneration = "rotate_generation"
	// MaxSpread is the window over which re-mints are spread.
	MaxSpread = "max_spread"

	// PolicyID is an mTLS policy's id.
	PolicyID = "policy_id"
	// Policies is a number of mTLS policies.
	Policies = "policies"

	// Method is the gRPC method a workload or proxy called.
	Method = "method"
	// PID and UID are a caller's Unix peer credentials.
	PID = "pid"
	UID = "uid"
	// MaxConnsPerUID is the socket's per-user connection limit.
	MaxConnsPerUID = "max_conns_per_uid"

	// TrustDomain is a federated trust domain's name.
	TrustDomain = "trust_domain"
	// FederatedBundles is the number of federated bundles applied.
	FederatedBundles = "federated_bundles"
	// Kubernetes workload attestation (agent/k8sattest).
	Node        = "node"
	Pods        = "pods"
	ContainerID = "container_id"
	Pod         = "pod"
)

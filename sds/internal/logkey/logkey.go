// Package logkey holds the log attribute keys of sds/ (the SDS server, the
// SDS client and `signet proxy`), in one place, so that one attribute has
// one name in every line. Logs name secrets, SPIFFE IDs, versions and
// nonces, never key material.
package logkey

const (
	// Component names the part that logs (sds, sds-client, proxy, ...).
	Component = "component"
	// Error is the error that made the line.
	Error = "error"
	// Socket is the agent's Unix socket.
	Socket = "socket"
	// RetryIn is the delay before the next reconnection attempt.
	RetryIn = "retry_in"
	// Count is how many items a line is about.
	Count = "count"

	// API is the SDS variant (stream, delta, fetch).
	API = "api"
	// PID and UID are a caller's Unix peer credentials.
	PID = "pid"
	UID = "uid"
	// Resource and Resources name secrets; Removed, secrets removed.
	Resource  = "resource"
	Resources = "resources"
	Removed   = "removed"
	// Version is a secret set's version_info; AckedVersion the one the
	// client acknowledged; KeptVersion the one a client kept after
	// rejecting a response.
	Version      = "version"
	AckedVersion = "acked_version"
	KeptVersion  = "kept_version"
	// Nonce is a response's nonce.
	Nonce = "nonce"
	// BundleRevision is the trust bundle's revision.
	BundleRevision = "bundle_revision"

	// SPIFFEID is a workload's SPIFFE ID; PeerID the one a peer
	// presented or must present.
	SPIFFEID = "spiffe_id"
	PeerID   = "peer_id"
	// Port is a proxy listener's port; Source a connection's source
	// address; Remote and Upstream the addresses a proxy dials.
	Port     = "port"
	Source   = "source"
	Remote   = "remote"
	Upstream = "upstream"
	// Inbound and Outbound count a proxy's listeners.
	Inbound  = "inbound"
	Outbound = "outbound"
	// Mode, DryRun, Exempt and PolicyID describe an mTLS decision.
	Mode     = "mode"
	DryRun   = "dry_run"
	Exempt   = "exempt"
	PolicyID = "policy_id"
	// Reason says why a connection was refused.
	Reason = "reason"
	// MTLS, Plaintext and Refused count a port's inbound connections.
	MTLS      = "mtls"
	Plaintext = "plaintext"
	Refused   = "refused"
)

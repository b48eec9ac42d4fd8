package api

// Log attribute keys of the node and admin APIs, in one place so every
// message names things alike.
const (
	logActor       = "actor"
	logAuditSeq    = "audit_seq"
	logBytes       = "bytes"
	logComponent   = "component"
	logCount       = "count"
	logDryRun      = "dry_run"
	logEntryID     = "entry_id"
	logError       = "error"
	logExpiresAt   = "expires_at"
	logForcedOver  = "forced_over"
	logIncarnation = "incarnation"
	logPeer        = "peer_address"
	logMethod      = "method"
	logMode        = "mode"
	logNodeID      = "node_id"
	logNotAfter    = "not_after"
	logOp          = "op"
	logParentID    = "parent_id"
	logPolicyID    = "policy_id"
	logPort        = "port"
	logReason      = "reason"
	logRevision    = "revision"
	logScope       = "scope"
	logSerial      = "serial"
	logSPIFFEID    = "spiffe_id"
	logTokenID     = "token_id"
	logUID         = "uid"
)

// Rotate-now window (capacity.go).
const (
	logRotateGeneration = "rotate_generation"
	logSVIDCost         = "svid_cost"
	logWindow           = "window"
)

// Kubernetes node attestation (node_k8s.go, node_auto.go).
const logAttestor = "attestor"

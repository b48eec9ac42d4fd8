package rotation

// Log attribute keys, in one place so every message names things alike.
const (
	logAuthorityID = "authority_id"
	logKind        = "kind"
	logState       = "state"
	logParentID    = "parent_id"
	logNotAfter    = "not_after"
	logSerial      = "serial"
	logSPIFFEID    = "spiffe_id"
	logRevision    = "bundle_revision"
	logError       = "error"
	// Root rotation steps (roots.go).
	logActor       = "actor"
	logCSRKeyID    = "csr_key_id"
	logStaleAgents = "stale_agents"
	logRotateNow   = "rotate_now"
	logSVIDs       = "svids"
	logExpiresIn   = "expires_in"
	// Steps (commit.go, prepare.go).
	logServer    = "server_name"
	logFrom      = "from"
	logRootID    = "root_id"
	logSubject   = "subject"
	logKeyRef    = "key_ref"
	logStep      = "step"
	logAttempt   = "attempt"
	logReason    = "reason"
	logComponent = "component"
)

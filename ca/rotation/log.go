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
)

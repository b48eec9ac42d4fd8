package server

// Log attribute keys of the assembled CA, in one place.
const (
	logAdminSocket = "admin_socket"
	logComponent   = "component"
	logCount       = "count"
	logError       = "error"
	logNodeAPI     = "node_api"
	logTrustDomain = "trust_domain"
	logSeq         = "seq"
	logReason      = "reason"
	logFromSeq     = "from_seq"
	logToSeq       = "to_seq"
	logRecords     = "records"
	logTokens      = "join_tokens"
	logNodes       = "evicted_nodes"
	// logBackupCreatedAt is when the backup a store was restored from
	// was taken.
	logBackupCreatedAt = "backup_created_at"
	logAddress         = "address"
	logServerName      = "server_name"
	logLeading         = "leading"
	logStore           = "store"
)

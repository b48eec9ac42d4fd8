package workloadapi

// Log attribute keys.
const (
	logKeyMethod   = "method"
	logKeyPID      = "pid"
	logKeyUID      = "uid"
	logKeySPIFFEID = "spiffe_id"
	logKeyEntryID  = "entry_id"
	logKeyHint     = "hint"
	logKeyError    = "error"
)

package federation

// Log attribute keys of this package.
const (
	logComponent   = "component"
	logTrustDomain = "trust_domain"
	logURL         = "bundle_endpoint_url"
	logSequence    = "sequence"
	logReason      = "reason"
	logError       = "error"
	logRetryIn     = "retry_in"
	logNextRefresh = "next_refresh"
	logAddress     = "address"
	logProfile     = "profile"
	logRoots       = "roots"
)

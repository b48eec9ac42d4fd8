package k8spsat

// Log attribute keys of this package.
const (
	logCluster = "cluster"
	logError   = "error"
	logRetryIn = "retry_in"
)

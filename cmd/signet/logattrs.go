package main

// Log attribute keys of the records cmd/signet writes itself (the
// components log with their own keys).
const (
	logTrustDomain = "trust_domain"
	logNodeAPI     = "node_api"
	logAdminSocket = "admin_socket"
	logSocket      = "socket"
	logMetrics     = "metrics"
	logHealth      = "health"
	logSPIFFEID    = "spiffe_id"
	logReason      = "reason"
	logError       = "error"
)

// Log attribute keys of the bundle endpoint (server_federation.go).
const (
	logFederationListen  = "federation_listen"
	logFederationProfile = "federation_profile"
)

// Log attribute keys of the profiling listener (server_debug.go).
const (
	logDebugListen = "debug_listen"
)

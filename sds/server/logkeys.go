package server

// Log attribute keys. Logs name secrets, SPIFFE IDs, versions and nonces,
// never key material.
const (
	keyComponent      = "component"
	keyAPI            = "api"
	keyPID            = "pid"
	keyUID            = "uid"
	keyError          = "error"
	keyResource       = "resource"
	keyResources      = "resources"
	keyRemoved        = "removed"
	keyVersion        = "version"
	keyAckedVersion   = "acked_version"
	keyNonce          = "nonce"
	keyBundleRevision = "bundle_revision"
)

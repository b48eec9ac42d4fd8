//go:build !signet_testhooks

package agentcmd

// nodeKeyKDFIterations is 0, the default count: a product build has no
// test hooks (see kdf_testhook.go).
func nodeKeyKDFIterations(func(string) string) (int, error) { return 0, nil }

//go:build signet_testhooks

package agentcmd

import "github.com/signet-mesh/signet/cmd/internal/cli"

// nodeKeyKDFIterations is the PBKDF2 iteration count of the node key
// (agent.Config.KeyKDFIterations) that cli.KDFIterationsEnv sets in a
// test build.
func nodeKeyKDFIterations(getenv func(string) string) (int, error) {
	return cli.TestKDFIterations(getenv)
}

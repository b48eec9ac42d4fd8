//go:build signet_testhooks

package cli

import (
	"fmt"
	"strconv"
)

// KDFIterationsEnv is for tests only, and exists only in binaries built
// with -tags signet_testhooks (the end-to-end tests build signet so): the
// PBKDF2 iteration count of the keys the process encrypts at rest, the
// server's soft keys and the agent's node key. The end-to-end tests start
// dozens of servers and agents; at the default of 600,000 each server
// spent about 2 s of CPU encrypting its keys, and each agent most of a
// second per node SVID.
const KDFIterationsEnv = "SIGNET_TEST_KDF_ITERATIONS"

// TestKDFIterations reads KDFIterationsEnv: 0 (the default count) when it
// is unset.
func TestKDFIterations(getenv func(string) string) (int, error) {
	v := getenv(KDFIterationsEnv)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive iteration count", KDFIterationsEnv, v)
	}
	return n, nil
}

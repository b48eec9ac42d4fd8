package agent_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies guards the dependency direction: the agent and every
// package under it never reach the CA, the binary, or the store's bbolt;
// they share only proto/, internal/ leaves and go-spiffe types with the CA
// (their tests may run a real CA through test/testserver).
func TestDependencies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	const module = "github.com/signet-mesh/signet/"
	forbidden := map[string]string{
		module + "ca":      "the agent and the CA meet only over the node API (proto/, internal/nodeapi)",
		module + "cmd":     "cmd wires the agent, not the other way round",
		module + "test":    "test helpers are for _test.go files",
		"go.etcd.io/bbolt": "only ca/store opens the database",
	}
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", module+"agent/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for f, why := range forbidden {
			if dep == f || strings.HasPrefix(dep, f+"/") {
				t.Errorf("agent/... depends on %s: %s", dep, why)
			}
		}
	}
}

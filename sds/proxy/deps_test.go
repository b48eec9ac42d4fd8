package proxy_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies guards the dependency direction: the proxy talks to the
// agent only over its socket (SDS and the proxy API's protobufs), shares
// only leaf packages, and never reaches the agent's or the CA's code.
// agent/proxyapi, its server side, does not reach the CA or sds either.
func TestDependencies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	const module = "github.com/signet-mesh/signet/"
	for pkg, forbidden := range map[string][]string{
		module + "sds/proxy":           {module + "agent", module + "ca", module + "cmd"},
		module + "agent/proxyapi":      {module + "ca", module + "sds", module + "cmd", module + "agent/client"},
		module + "internal/mtlspolicy": {module + "agent", module + "ca", module + "sds", module + "cmd", module + "proto"},
	} {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, f := range forbidden {
				if dep == f || strings.HasPrefix(dep, f+"/") {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	}
}

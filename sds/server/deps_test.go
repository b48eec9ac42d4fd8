package server_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies guards the dependency direction: the SDS packages see the
// agent only through the interfaces of this package, and never reach the CA
// or the binary.
func TestDependencies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	const module = "github.com/signet-mesh/signet/"
	forbidden := []string{module + "agent", module + "ca", module + "cmd"}
	for _, pkg := range []string{module + "sds/server", module + "sds/client"} {
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

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/signet-mesh/signet/internal/doccmd"
)

// placeholder is a word the reader replaces: ID, SPIFFE_ID, NAME, FILE.
var placeholder = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$|\.\.\.|<|\$`)

// runnable reports whether a docs command needs nothing but a running CA
// and the current directory: no placeholder, no path of a real host, not
// a long-running process. The rest are only parsed (cmd/signet's
// TestDocsCommands).
func runnable(c doccmd.Command) bool {
	if c.ParseOnly || len(c.Args) == 0 {
		return false
	}
	if slices.Contains([]string{"server", "agent", "dev", "proxy"}, c.Args[0]) {
		return false
	}
	for _, a := range c.Args {
		_, v, _ := strings.Cut(a, "=")
		if a == "--follow" || placeholder.MatchString(a) || strings.HasPrefix(a, "/") || strings.HasPrefix(v, "/") {
			return false
		}
	}
	return !strings.HasPrefix(c.Stdout, "/")
}

// TestDocsCommandsRun runs, in the order the pages show them, every
// command of docs/*.md that needs only a running CA, each in the same
// scratch directory against one real server; each must succeed. So the
// handbook's backup, restore, upgrade, rotation and audit steps are the
// ones that work.
func TestDocsCommandsRun(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	dir := t.TempDir()
	files, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		cmds, err := doccmd.Extract(data)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, c := range cmds {
			if !runnable(c) {
				continue
			}
			ran++
			cmd := exec.Command(signetBinary(t), c.Args...)
			cmd.Dir = dir
			cmd.Env = processEnv(s.env)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if c.Stdout != "" {
				out, err := os.Create(filepath.Join(dir, c.Stdout))
				if err != nil {
					t.Fatal(err)
				}
				cmd.Stdout = out
				defer out.Close()
			}
			if err := cmd.Run(); err != nil {
				t.Errorf("%s:%d: %s: %v\n%s", filepath.Base(f), c.Line, c.Raw, err, stderr.String())
			}
		}
	}
	if ran < 10 {
		t.Errorf("ran %d commands from the docs; the extraction is broken", ran)
	}
	t.Logf("ran %d commands from docs/", ran)
}

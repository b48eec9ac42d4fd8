package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signet-mesh/signet/cmd/internal/agentcmd"
	"github.com/signet-mesh/signet/cmd/internal/cli"
	"github.com/signet-mesh/signet/internal/doccmd"
)

// TestDocsCommands: every signet command line in the shell blocks of
// docs/*.md, README.md and deploy/kubernetes/examples/README.md names a command that exists, with flags it
// takes and the number of arguments it wants, so the docs cannot drift
// from the CLI. (test/e2e's TestDocsCommandsRun runs the ones that need
// only a CA.) Nothing is executed here: each line is parsed by the real
// command tree.
func TestDocsCommands(t *testing.T) {
	files, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../../README.md", "../../deploy/kubernetes/examples/README.md")
	total := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		cmds, err := doccmd.Extract(data)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		for _, c := range cmds {
			total++
			if err := parseCommandLine(c.Args); err != nil {
				t.Errorf("%s:%d: %s: %v", strings.TrimPrefix(f, "../../"), c.Line, c.Raw, err)
			}
		}
	}
	if total < 50 {
		t.Errorf("found %d signet commands in the docs; the extraction is broken", total)
	}
}

// parseCommandLine resolves args in signet's command tree and parses its
// flags and positional arguments as a run would, without running it.
func parseCommandLine(args []string) error {
	return parseBinaryCommandLine("signet", args)
}

// parseBinaryCommandLine is parseCommandLine for the binary bin: signet,
// or signet-agent.
func parseBinaryCommandLine(bin string, args []string) error {
	env := &cliEnv{stdin: strings.NewReader(""), stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, getenv: func(string) string { return "" }}
	root := newRootCommand(env)
	if bin == agentcmd.Name {
		root = agentcmd.NewRootCommand(env.shared())
	}
	c, rest, err := root.Find(args)
	if err != nil {
		return err
	}
	if err := c.ParseFlags(rest); err != nil {
		return cli.UsageError(c, err)
	}
	if c.Runnable() {
		return c.ValidateArgs(c.Flags().Args())
	}
	if a := c.Flags().Args(); len(a) > 0 && c.Args != nil {
		return c.Args(c, a)
	}
	return nil
}

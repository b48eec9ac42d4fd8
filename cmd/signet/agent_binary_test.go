package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/signet-mesh/signet/cmd/internal/agentcmd"
	"github.com/signet-mesh/signet/cmd/internal/cli"
)

// flagInfo is what a user sees of a flag in -h.
type flagInfo struct{ Name, Type, Default, Usage string }

func flagsOf(fs *pflag.FlagSet) []flagInfo {
	var out []flagInfo
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name != "help" && f.Name != "version" {
			out = append(out, flagInfo{f.Name, f.Value.Type(), f.DefValue, f.Usage})
		}
	})
	return out
}

// TestSignetAgentBinary: signet-agent takes exactly the flags of `signet
// agent` (the keys, --config, --check-config), with the same defaults and
// help, and carries healthcheck and version with signet's flags.
func TestSignetAgentBinary(t *testing.T) {
	env := &cliEnv{stdin: strings.NewReader(""), stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, getenv: mapEnv(nil)}
	root := newRootCommand(env)
	agentRoot := agentcmd.NewRootCommand(env.shared())
	find := func(root *cobra.Command, args ...string) *cobra.Command {
		t.Helper()
		c, _, err := root.Find(args)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if d := cmp.Diff(flagsOf(find(root, "agent").Flags()), flagsOf(agentRoot.Flags())); d != "" {
		t.Errorf("signet-agent's flags differ from signet agent's (-signet agent +signet-agent):\n%s", d)
	}
	for _, sub := range []string{"healthcheck", "version"} {
		c := find(agentRoot, sub)
		if c == agentRoot {
			t.Errorf("signet-agent has no %s command", sub)
			continue
		}
		if d := cmp.Diff(flagsOf(find(root, sub).Flags()), flagsOf(c.Flags())); d != "" {
			t.Errorf("signet-agent %s: flags differ from signet %s:\n%s", sub, sub, d)
		}
	}
	var names []string
	for _, c := range agentRoot.Commands() {
		names = append(names, c.Name())
	}
	if d := cmp.Diff([]string{"healthcheck", "version"}, names); d != "" {
		t.Errorf("signet-agent's commands (-want +got):\n%s", d)
	}
}

// TestSignetAgentCommandLines: what signet-agent prints and how it fails,
// as its main runs it.
func TestSignetAgentCommandLines(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{name: "version", args: []string{"version"}, wantStdout: "signet-agent "},
		{name: "--version", args: []string{"--version"}, wantStdout: "signet-agent "},
		{name: "help", args: []string{"--help"}, wantStdout: "--server-address"},
		{name: "argument", args: []string{"run"}, wantCode: 1, wantStderr: `signet-agent: unexpected argument "run" (see 'signet-agent --help')`},
		{name: "unknown flag", args: []string{"--server-adress", "x:1"}, wantCode: 1, wantStderr: "signet-agent: unknown flag: --server-adress (see 'signet-agent --help')"},
		{name: "healthcheck, nothing listening", args: []string{"healthcheck", "--socket", "/nonexistent/agent.sock", "--timeout", "1s"}, wantCode: 1, wantStderr: "signet-agent: agent at /nonexistent/agent.sock is not healthy"},
		{name: "healthcheck flags", args: []string{"healthcheck", "--socket", "a", "--url", "http://x"}, wantCode: 1, wantStderr: "give exactly one of --socket, --admin-socket or --url"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			env := &cli.Env{Stdout: &stdout, Stderr: &stderr, Getenv: mapEnv(nil)}
			code := agentcmd.Main(context.Background(), env, tc.args)
			if code != tc.wantCode || !strings.Contains(stdout.String(), tc.wantStdout) || !strings.Contains(stderr.String(), tc.wantStderr) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q", code, stdout.String(), stderr.String(), tc.wantCode, tc.wantStdout, tc.wantStderr)
			}
			if tc.wantCode != 0 && strings.Count(stderr.String(), "\n") != 1 {
				t.Errorf("stderr %q is not one line", stderr.String())
			}
		})
	}
}

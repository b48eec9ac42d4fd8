// Package cli is what signet's two binaries share of their command line:
// `signet` (every command) and `signet-agent` (the node agent alone, so
// that an agent maps none of the CA's code; see cmd/internal/agentcmd).
//
// It holds the layered configuration of the daemons (defaults, the YAML
// file, SIGNET_* variables, flags: config.go, yamlfile.go), durations with
// days, the process logger, the agent socket's address forms, the
// writable-directory check of --check-config, and the commands both
// binaries carry: healthcheck and version. It must stay light: no CA
// package, no store, nothing an agent would not run
// (internal/deptest's TestAgentBinaryStaysLight).
package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// Env is what a command may touch: its streams and environment. Tests
// run commands in-process with buffers.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

// Names shared by the server and the agent.
const (
	// DefaultTrustDomain is the trust_domain default of both daemons.
	DefaultTrustDomain = "example.org"
	// PassphraseEnv holds the key passphrase itself, for deployments that
	// inject secrets as environment variables.
	PassphraseEnv = "SIGNET_KEY_PASSPHRASE"
	// AdminSocketEnv is where the operator commands (and healthcheck) find
	// the CA's admin socket.
	AdminSocketEnv = "SIGNET_ADMIN_SOCKET"
)

// NoArgs refuses positional arguments.
func NoArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return UsageError(c, fmt.Errorf("unexpected argument %q", args[0]))
	}
	return nil
}

// UsageError says what was wrong with a command line, and where its help
// is. main prefixes the binary's name ("signet: "), so the path is written
// without it.
func UsageError(c *cobra.Command, err error) error {
	if sub := strings.TrimPrefix(c.CommandPath(), c.Root().Name()+" "); c.HasParent() {
		return fmt.Errorf("%s: %w (see '%s --help')", sub, err, c.CommandPath())
	}
	return fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())
}

// OneLine keeps an error message on one line: every error is one line on
// stderr.
func OneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// Command signet is signet's main binary: the CA server, the node agent,
// the all-in-one dev mode, the reference proxy, and the operator commands.
// (cmd/signet-agent is the node agent alone, without the CA's code; both
// run the agent command of cmd/internal/agentcmd.)
//
// The CLI is built on cobra and pflag. main only wires flags and config
// files to packages; each command lives in its own file (cmd_<group>_<name>.go)
// with an options struct that registers its own flags, as bbolt's
// cmd/bbolt/command does. Shared pieces: admin.go (the admin socket),
// output.go (-o table|json|csv), endpoint.go (the agent socket option of
// the client commands), args.go (positional arguments); the layered config
// files and flags, durations with days, the logger, healthcheck and
// version are in cmd/internal/cli, which signet-agent shares.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/signet-mesh/signet/cmd/internal/agentcmd"
	"github.com/signet-mesh/signet/cmd/internal/cli"
)

// cliEnv is what a command may touch: its streams and environment. Tests
// run commands in-process with buffers.
type cliEnv struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

// shared is e as the commands of cmd/internal/cli see it.
func (e *cliEnv) shared() *cli.Env {
	return &cli.Env{Stdin: e.stdin, Stdout: e.stdout, Stderr: e.stderr, Getenv: e.getenv}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env := &cliEnv{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	if err := run(ctx, env, os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "signet: %s\n", cli.OneLine(err.Error()))
		os.Exit(1)
	}
}

// run runs one command line. Help (-h, --help, help CMD) goes to stdout
// and is not an error.
func run(ctx context.Context, env *cliEnv, args []string) error {
	if env.stdin == nil {
		env.stdin = strings.NewReader("")
	}
	root := newRootCommand(env)
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

func newRootCommand(env *cliEnv) *cobra.Command {
	root := &cobra.Command{
		Use:   "signet",
		Short: "SPIFFE workload identity: CA, node agent, Envoy SDS and the operator's CLI",
		Long: `signet issues short-lived SPIFFE X.509-SVIDs. A central CA (signet server)
signs for node agents (signet agent); each agent attests the workloads on its
node and serves their SVIDs over the SPIFFE Workload API and Envoy SDS on one
Unix socket. Operators drive the CA through its admin socket
(--admin-socket, or ` + cli.AdminSocketEnv + `).`,
		Example: `  signet dev                          # CA and agent in one process: start here
  signet entry list -o json
  signet help entry`,
		DisableFlagsInUseLine: true,
		// Errors are printed once, as one line, by main; usage only on
		// request.
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetIn(env.stdin)
	root.SetOut(env.stdout)
	root.SetErr(env.stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return cli.UsageError(c, err)
	})
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetHelpCommand(newHelpCommand(root))
	root.AddCommand(
		newServerCommand(env),
		agentcmd.NewCommand(env.shared()),
		newDevCommand(env),
		newTokenCommand(env),
		newEntryCommand(env),
		newNodeCommand(env),
		newSVIDCommand(env),
		newBundleCommand(env),
		newRootCACommand(env),
		newWorkloadCommand(env),
		newAuditCommand(env),
		newMTLSCommand(env),
		newStoreCommand(env),
		newFederationCommand(env),
		newProxyCommand(env),
		cli.NewHealthcheckCommand("signet", env.shared()),
		newBenchCommand(env),
		cli.NewVersionCommand("signet", env.shared()),
		newCompletionCommand(root),
	)
	groupArgs(root)
	cli.AddVersionFlag(root, "signet", env.shared()) // not cobra's Version: see there
	return root
}

// newGroupCommand is a command whose subcommands do the work (signet entry,
// signet root, ...). Alone it prints its help; with an unknown subcommand
// it fails, suggesting the closest one.
func newGroupCommand(use, short, example string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{Use: use, Short: short, Example: example, DisableFlagsInUseLine: true}
	c.AddCommand(subs...)
	groupArgs(c)
	return c
}

func groupArgs(c *cobra.Command) {
	c.SuggestionsMinimumDistance = 2
	c.Args = func(c *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], c.CommandPath())
		if s := c.SuggestionsFor(args[0]); len(s) > 0 {
			msg += fmt.Sprintf(" (did you mean %q?)", s[0])
		}
		return cli.UsageError(c, errors.New(msg))
	}
	c.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
}

// newHelpCommand is `signet help [command]`: the command's help on stdout.
func newHelpCommand(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "show the help of any command",
		Example: `  signet help entry
  signet help entry create      # the same as: signet entry create --help`,
		ValidArgsFunction: func(c *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			cmd, _, err := root.Find(args)
			if err != nil || cmd == nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var names []string
			for _, s := range cmd.Commands() {
				if s.IsAvailableCommand() && strings.HasPrefix(s.Name(), toComplete) {
					names = append(names, s.Name())
				}
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(c *cobra.Command, args []string) error {
			cmd, rest, err := root.Find(args)
			if err != nil || cmd == nil || len(rest) > 0 {
				return cli.UsageError(c, fmt.Errorf("no command %q: see 'signet --help' for the commands", strings.Join(args, " ")))
			}
			cmd.InitDefaultHelpFlag() // as --help shows it
			return cmd.Help()
		},
	}
}

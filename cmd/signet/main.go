// Command signet is signet's single binary: the CA server, the node agent,
// the all-in-one dev mode, the reference proxy, and the operator commands.
// main only wires flags and config files to packages; each subcommand lives
// in its own file (cmd_*.go).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// command is one subcommand (or group of them).
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *cliEnv, args []string) error
	sub     []*command
}

// cliEnv is what a command may touch: its output streams and environment.
// Tests run commands in-process with buffers.
type cliEnv struct {
	stdout, stderr io.Writer
	getenv         func(string) string
}

func commands() []*command {
	return []*command{
		serverCommand(),
		agentCommand(),
		devCommand(),
		tokenCommand(),
		entryCommand(),
		nodeCommand(),
		svidCommand(),
		bundleCommand(),
		rootCommand(),
		workloadCommand(),
		auditCommand(),
		mtlsCommand(),
		proxyCommand(),
		healthcheckCommand(),
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env := &cliEnv{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	if err := run(ctx, env, os.Args[1:]); err != nil {
		if !errors.Is(err, errUsagePrinted) {
			fmt.Fprintf(os.Stderr, "signet: %v\n", err)
		}
		os.Exit(1)
	}
}

var errUsagePrinted = errors.New("usage printed")

func run(ctx context.Context, env *cliEnv, args []string) error {
	return dispatch(ctx, env, "signet", commands(), args)
}

func dispatch(ctx context.Context, env *cliEnv, prefix string, cmds []*command, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printCommands(env.stderr, prefix, cmds)
		if len(args) == 0 {
			return errUsagePrinted
		}
		return nil
	}
	for _, c := range cmds {
		if c.name != args[0] {
			continue
		}
		if c.sub != nil {
			return dispatch(ctx, env, prefix+" "+c.name, c.sub, args[1:])
		}
		return c.run(ctx, env, args[1:])
	}
	printCommands(env.stderr, prefix, cmds)
	return fmt.Errorf("unknown command %q", prefix+" "+args[0])
}

func printCommands(w io.Writer, prefix string, cmds []*command) {
	fmt.Fprintf(w, "Usage: %s <command> [flags]\n\nCommands:\n", prefix)
	sorted := append([]*command(nil), cmds...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].name < sorted[j].name })
	width := 0
	for _, c := range sorted {
		width = max(width, len(c.name))
	}
	for _, c := range sorted {
		fmt.Fprintf(w, "  %-*s  %s\n", width, c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun '%s <command> -h' for a command's flags.\n", prefix)
}

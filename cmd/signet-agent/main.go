// Command signet-agent is signet's node agent in a binary of its own: it
// runs exactly what `signet agent` runs (the same command, from
// cmd/internal/agentcmd: flags, config keys, SIGNET_* variables, logs and
// exit codes), plus the healthcheck and version commands an agent's
// container or systemd unit needs.
//
// Every package a Go binary links is mapped, and its init run, whatever
// the command; on a node the agent's resident memory is mostly the pages of
// its binary. signet-agent links none of the CA (its store, etcd, the key
// managers and their KMS clients, the admin commands), so it maps about a
// third of what `signet` does (issue 19). `signet agent` keeps working from
// the one signet binary.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/signet-mesh/signet/cmd/internal/agentcmd"
	"github.com/signet-mesh/signet/cmd/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	env := &cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
	code := agentcmd.Main(ctx, env, os.Args[1:])
	stop()
	os.Exit(code)
}

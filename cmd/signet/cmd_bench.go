package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/signet-mesh/signet/cmd/internal/cli"
	"github.com/spf13/cobra"
)

func newBenchCommand(env *cliEnv) *cobra.Command {
	return newGroupCommand("bench", "measure signet under load", `  signet bench fleet --agents 1000 --duration 1m -o json`,
		newBenchFleetCommand(env),
	)
}

type benchFleetOptions struct {
	output        outputOption
	agents        int
	workloads     int
	x509TTL       time.Duration
	duration      time.Duration
	serverAddress string
	adminSocket   string
	profileDir    string
}

func newBenchFleetCommand(env *cliEnv) *cobra.Command {
	var o benchFleetOptions
	cmd := &cobra.Command{
		Use:   "fleet",
		Short: "run a simulated fleet of agents against a real CA and print its figures",
		Long: `Start a real signet server in a temporary directory (or use --server-address
with --admin-socket), then simulate --agents agents in this process: each is the
real agent (its own join token, node key, mTLS connection and entry sync stream),
minting --workloads SVIDs with fresh keys and rotating them at half-life. The
fleet is built, left idle, probed for --duration (entry changes, mints), then a
root is prepared (bundle fan-out) and activated with --rotate-now, and the
server is killed with SIGKILL and restarted (reconnection).`,
		Example: `  signet bench fleet
  signet bench fleet --agents 200 --workloads 5 --duration 10s -o json`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context(), env) },
	}
	o.output.addFlags(cmd, objectFormats)
	fs := cmd.Flags()
	fs.IntVar(&o.agents, "agents", 1000, "simulated agents")
	fs.IntVar(&o.workloads, "workloads", 10, "workload entries (SVIDs) per agent")
	fs.Var(cli.NewDurationValue(&o.x509TTL, time.Hour), "x509-ttl", "lifetime of the workload SVIDs (30m, 1h)")
	fs.Var(cli.NewDurationValue(&o.duration, time.Minute), "duration", "how long the steady-state probes run (10s, 1m)")
	fs.StringVar(&o.serverAddress, "server-address", "", "use this running CA's node API instead of starting one (with --admin-socket)")
	fs.StringVar(&o.adminSocket, "admin-socket", "", "the running CA's admin socket (with --server-address)")
	fs.StringVar(&o.profileDir, "profile-dir", "", "save in this directory the server's heap and goroutine profiles and its memory at each RSS sample (idle, steady, rotated), CPU profiles (server and bench) of the steady probes, the fan-out, the rotate-now and the reconnection, and the server's log")
	return cmd
}

func (o *benchFleetOptions) run(ctx context.Context, env *cliEnv) error {
	switch {
	case o.agents < 1 || o.workloads < 1:
		return fmt.Errorf("--agents and --workloads must be at least 1")
	case o.duration <= 0:
		return fmt.Errorf("--duration must be positive")
	case o.x509TTL < time.Minute:
		return fmt.Errorf("--x509-ttl must be at least 1m")
	case (o.serverAddress == "") != (o.adminSocket == ""):
		return fmt.Errorf("--server-address and --admin-socket go together: give both to use a running CA, or neither to start one")
	case o.profileDir != "" && o.serverAddress != "":
		return fmt.Errorf("--profile-dir needs the server the bench starts: take a running CA's profiles from its debug_listen instead")
	}
	b := &fleetBench{opts: *o, env: env}
	// Progress goes to a terminal only; stdout has the figures alone.
	if f, ok := env.stderr.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			b.progress = f
		}
	}
	res, err := b.run(ctx)
	if err != nil {
		return err
	}
	if o.output.json() {
		return printJSON(env.stdout, res)
	}
	return res.printTable(env.stdout)
}

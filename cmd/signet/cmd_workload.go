package main

import (
	"github.com/spf13/cobra"
)

func newWorkloadCommand(env *cliEnv) *cobra.Command {
	return newGroupCommand("workload", "act as a workload: fetch SVIDs from an agent's Workload API", `  signet workload fetch --socket /run/signet/agent.sock`,
		newWorkloadFetchCommand(env),
	)
}

package main

import (
	"github.com/spf13/cobra"
)

func newNodeCommand(env *cliEnv) *cobra.Command {
	return newGroupCommand("node", "attested agents", `  signet node list
  signet node evict spiffe://example.org/signet/agent/join_token/node1`,
		newNodeListCommand(env),
		newNodeEvictCommand(env),
	)
}

package main

import (
	"github.com/spf13/cobra"
)

func newSVIDCommand(env *cliEnv) *cobra.Command {
	return newGroupCommand("svid", "issued certificates", `  signet svid list --valid -o csv`,
		newSVIDListCommand(env),
	)
}

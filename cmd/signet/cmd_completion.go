package main

import (
	"fmt"

	"github.com/signet-mesh/signet/cmd/internal/cli"
	"github.com/spf13/cobra"
)

// completionShells are the shells `signet completion` writes scripts for.
var completionShells = []string{"bash", "zsh", "fish"}

func newCompletionCommand(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "print a shell completion script",
		Long: `Print a completion script for bash, zsh or fish: commands, flags, and the
values of flags such as -o, --mode and --type.`,
		Example: `  source <(signet completion bash)
  signet completion bash > /etc/bash_completion.d/signet
  signet completion zsh > "${fpath[1]}/_signet"
  signet completion fish > ~/.config/fish/completions/signet.fish`,
		ValidArgs: completionShells,
		Args:      exactArgs("SHELL"),
		RunE: func(c *cobra.Command, args []string) error {
			out := c.OutOrStdout()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(out, true)
			case "zsh":
				return root.GenZshCompletion(out)
			case "fish":
				return root.GenFishCompletion(out, true)
			}
			return cli.UsageError(c, fmt.Errorf("unknown shell %q: use %s", args[0], orList(completionShells)))
		},
	}
}

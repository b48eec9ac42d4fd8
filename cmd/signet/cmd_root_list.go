package main

import (
	"context"

	"github.com/signet-mesh/signet/cmd/internal/cli"
	"github.com/spf13/cobra"
)

type rootListOptions struct {
	admin  adminOptions
	output outputOption
	all    bool
}

func newRootListCommand(env *cliEnv) *cobra.Command {
	var o rootListOptions
	cmd := &cobra.Command{
		Use:   "list",
		Short: "list roots (--all: every authority)",
		Example: `  signet root list
  signet root list --all -o json`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context(), env) },
	}
	o.admin.addFlags(cmd.Flags(), env)
	o.output.addFlags(cmd, listFormats)
	cmd.Flags().BoolVar(&o.all, "all", false, "list intermediates and JWT keys too")
	return cmd
}

func (o *rootListOptions) run(ctx context.Context, env *cliEnv) error {
	resp, err := listAuthorities(ctx, &o.admin)
	if err != nil {
		return err
	}
	out := []authorityJSON{}
	rows := [][]string{}
	for _, a := range resp.Authorities {
		if !o.all && a.Kind != "root" {
			continue
		}
		j := authorityToJSON(a)
		out = append(out, j)
		row := []string{j.ID, j.State, j.KeyType, j.NotBefore, j.NotAfter}
		if o.all {
			row = []string{j.ID, j.Kind, j.State, j.KeyType, j.NotBefore, j.NotAfter, orDash(j.ParentID)}
		}
		rows = append(rows, row)
	}
	header := []string{"ID", "STATE", "KEY TYPE", "NOT BEFORE", "NOT AFTER"}
	if o.all {
		header = []string{"ID", "KIND", "STATE", "KEY TYPE", "NOT BEFORE", "NOT AFTER", "PARENT"}
	}
	return o.output.printList(env.stdout, out, header, rows)
}

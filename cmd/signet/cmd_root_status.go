package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/signet-mesh/signet/cmd/internal/cli"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

type rootStatusOptions struct {
	admin  adminOptions
	output outputOption
}

func newRootStatusCommand(env *cliEnv) *cobra.Command {
	var o rootStatusOptions
	cmd := &cobra.Command{
		Use:   "status",
		Short: "roots and intermediates in use: SVIDs chaining to each, agents that applied each root's bundle",
		Example: `  signet root status
  signet root status -o json`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context(), env) },
	}
	o.admin.addFlags(cmd.Flags(), env)
	o.output.addFlags(cmd, listFormats)
	return cmd
}

func (o *rootStatusOptions) run(ctx context.Context, env *cliEnv) error {
	resp, err := listAuthorities(ctx, &o.admin)
	if err != nil {
		return err
	}
	out := []authorityJSON{}
	rows := [][]string{}
	for _, a := range resp.Authorities {
		// In use: roots in the bundle and the signing intermediate.
		if a.Kind == "jwt" || a.State == "retired" || (a.Kind == "intermediate" && a.State != "active") {
			continue
		}
		j := authorityToJSON(a)
		out = append(out, j)
		applied := "-"
		if j.AgentsApplied != nil {
			applied = fmt.Sprintf("%d/%d", *j.AgentsApplied, *j.ConnectedAgents)
		}
		mark := ""
		if j.ExpiringSoon {
			mark = "EXPIRING"
		}
		rows = append(rows, []string{j.ID, j.Kind, j.State, j.KeyType, j.NotAfter, strconv.FormatInt(j.UnexpiredSVIDs, 10), applied, mark})
	}
	header := []string{"ID", "KIND", "STATE", "KEY TYPE", "NOT AFTER", "SVIDS", "AGENTS APPLIED", "WARNING"}
	if err := o.output.printList(env.stdout, out, header, rows); err != nil || o.output.format != outputTable {
		return err
	}
	fmt.Fprintf(env.stdout, "\nbundle revision %d\n", resp.BundleRevision)
	fmt.Fprintln(env.stdout, describeSchedule(resp.RootSchedule))
	lines, err := replicaLines(ctx, &o.admin, resp.BundleRevision)
	for _, l := range lines {
		fmt.Fprintln(env.stdout, l)
	}
	return err
}

// describeSchedule is the root status line about the automatic schedule.
func describeSchedule(s *adminv1.RootSchedule) string {
	if !s.GetAutomatic() {
		return "root rotation: manual (root_rotation: auto lets the server take the steps)"
	}
	line := "root rotation: automatic"
	switch {
	case s.GetNextStep() == "":
	case s.GetNextStepAt() == 0:
		line += "; next: " + s.GetNextStep() + " as soon as no current SVID chains to it"
	default:
		line += "; next: " + s.GetNextStep() + " at " + unixTime(s.GetNextStepAt())
	}
	if s.GetWaiting() != "" {
		line += "\nwaiting: " + s.GetWaiting()
	}
	return line
}

package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/signet-mesh/signet/cmd/internal/cli"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

type auditPruneOptions struct {
	admin  adminOptions
	before string
	dryRun bool
}

func newAuditPruneCommand(env *cliEnv) *cobra.Command {
	var o auditPruneOptions
	cmd := &cobra.Command{
		Use:   "prune --before T",
		Short: "remove exported records older than a time",
		Long: `Remove audit records older than --before, once a complete export holds them.
The log is cut at a signed checkpoint, which vouches for what was removed, so
the rest of the chain still verifies; the prune itself is an audit record.`,
		Example: `  signet audit prune --before 90d --dry-run    # how many would go
  signet audit prune --before 90d
  signet audit prune --before 2026-01-01T00:00:00Z`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context(), env) },
	}
	o.admin.addFlags(cmd.Flags(), env)
	cmd.Flags().StringVar(&o.before, "before", "", "remove exported records older than T (RFC 3339, or a duration ago like 90d)")
	cmd.Flags().BoolVar(&o.dryRun, "dry-run", false, "remove nothing: print how many records would be removed")
	return cmd
}

func (o *auditPruneOptions) run(ctx context.Context, env *cliEnv) error {
	if o.before == "" {
		return errors.New("--before is required")
	}
	t, err := parseWhen("--before", o.before, time.Now())
	if err != nil {
		return err
	}
	resp, err := adminCall(ctx, &o.admin, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.PruneAuditResponse, error) {
		return c.PruneAudit(ctx, &adminv1.PruneAuditRequest{Before: t, DryRun: o.dryRun})
	})
	if err != nil {
		return err
	}
	switch {
	case o.dryRun && !resp.GetDryRun():
		// A server that predates dry runs ignores the field and prunes.
		return fmt.Errorf("the CA at %s does not support --dry-run and REMOVED %d records", o.admin.socket, resp.GetRemoved())
	case o.dryRun:
		fmt.Fprintf(env.stdout, "would remove %d records (nothing was removed)\n", resp.GetRemoved())
	default:
		fmt.Fprintf(env.stdout, "removed %d records\n", resp.GetRemoved())
	}
	return nil
}

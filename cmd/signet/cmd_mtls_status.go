package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/signet-mesh/signet/cmd/internal/cli"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

type mtlsStatusOptions struct {
	admin  adminOptions
	output outputOption
}

func newMTLSStatusCommand(env *cliEnv) *cobra.Command {
	var o mtlsStatusOptions
	cmd := &cobra.Command{
		Use:   "status",
		Short: "each workload's mode, connection counts and readiness for STRICT",
		Example: `  signet mtls status
  signet mtls status -o json | jq '.[] | select(.ready | not) | .spiffe_id'`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context(), env) },
	}
	o.admin.addFlags(cmd.Flags(), env)
	o.output.addFlags(cmd, listFormats)
	return cmd
}

func (o *mtlsStatusOptions) run(ctx context.Context, env *cliEnv) error {
	resp, err := adminCall(ctx, &o.admin, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.GetMTLSStatusResponse, error) {
		return c.GetMTLSStatus(ctx, &adminv1.GetMTLSStatusRequest{})
	})
	if err != nil {
		return err
	}
	out := make([]mtlsStatusJSON, 0, len(resp.Workloads))
	rows := make([][]string, 0, len(resp.Workloads))
	for _, w := range resp.Workloads {
		s := statusToJSON(w, resp.WindowSeconds)
		out = append(out, s)
		ready := "READY"
		if !s.Ready {
			ready = "NOT READY"
		}
		rows = append(rows, []string{s.SPIFFEID, statusMode(s), strconv.FormatInt(s.MTLSConnections, 10), strconv.FormatInt(s.PlaintextConnections, 10),
			strconv.FormatInt(s.RefusedConnections, 10), ready, strings.Join(s.PlaintextSources, ",")})
	}
	if o.output.format == outputTable {
		fmt.Fprintf(env.stdout, "connection counts over the last %s\n\n", time.Duration(resp.WindowSeconds)*time.Second)
	}
	return o.output.printList(env.stdout, out, []string{"SPIFFE ID", "MODE", "MTLS", "PLAINTEXT", "REFUSED", "STRICT", "PLAINTEXT FROM"}, rows)
}

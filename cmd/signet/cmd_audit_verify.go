package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/cmd/internal/cli"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

type auditVerifyOptions struct {
	admin        adminOptions
	file, bundle string
}

func newAuditVerifyCommand(env *cliEnv) *cobra.Command {
	var o auditVerifyOptions
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "check an export (or the live log) and name the first bad record",
		Example: `  signet audit verify                                          # the live log, against the server's roots
  signet bundle show > bundle.pem
  signet audit verify --file audit.jsonl --bundle bundle.pem   # offline`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context(), env) },
	}
	o.admin.addFlags(cmd.Flags(), env)
	cmd.Flags().StringVar(&o.file, "file", "", "an export to check offline (default: export and check the live log)")
	cmd.Flags().StringVar(&o.bundle, "bundle", "", "PEM trust bundle whose roots signed the checkpoints (signet bundle show)")
	return cmd
}

func (o *auditVerifyOptions) run(ctx context.Context, env *cliEnv) error {
	var (
		keys audit.Keys
		src  io.Reader
		err  error
	)
	if o.bundle != "" {
		if keys, err = bundleKeys(o.bundle); err != nil {
			return err
		}
	}
	if o.file != "" {
		if keys == nil {
			return errors.New("--bundle is required with --file: the checkpoints are checked against the bundle's roots")
		}
		f, err := os.Open(o.file)
		if err != nil {
			return fmt.Errorf("--file: %w", err)
		}
		defer f.Close()
		src = bufio.NewReaderSize(f, 64<<10)
	} else {
		// Live: export everything to a temporary file (constant memory),
		// then check it with every root the server has had.
		if keys == nil {
			if keys, err = serverRootKeys(ctx, &o.admin); err != nil {
				return err
			}
		}
		tmp, err := os.CreateTemp("", "signet-audit-*.jsonl")
		if err != nil {
			return err
		}
		defer os.Remove(tmp.Name())
		defer tmp.Close()
		bw := bufio.NewWriterSize(tmp, 64<<10)
		if err := streamExport(ctx, &o.admin, &adminv1.ExportAuditRequest{}, func(line []byte) error { _, err := bw.Write(line); return err }); err != nil {
			return err
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		if _, err := tmp.Seek(0, io.SeekStart); err != nil {
			return err
		}
		src = bufio.NewReaderSize(tmp, 64<<10)
	}
	rep, err := audit.Verify(src, keys)
	if err != nil {
		return fmt.Errorf("audit trail does NOT verify: %w", err)
	}
	note := ""
	switch {
	case rep.Filtered:
		note = " (filtered export: records left out by the filter cannot be checked for deletion)"
	case rep.Pruned:
		note = " (log was pruned before seq " + fmt.Sprint(rep.FirstSeq) + ")"
	}
	fmt.Fprintf(env.stdout, "OK: %d records, seq %d..%d, %d checkpoints verified, %d signed by unknown keys%s\n",
		rep.Records, rep.FirstSeq, rep.LastSeq, rep.Checkpoints, rep.UnverifiedCheckpoints, note)
	return nil
}

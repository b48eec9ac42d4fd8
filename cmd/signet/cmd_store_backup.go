package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/signet-mesh/signet/ca/store"
	"github.com/signet-mesh/signet/cmd/internal/cli"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

type storeBackupOptions struct {
	admin adminOptions
	out   string
}

func newStoreBackupCommand(env *cliEnv) *cobra.Command {
	var o storeBackupOptions
	cmd := &cobra.Command{
		Use:   "backup --out FILE",
		Short: "write a consistent backup of the running CA's store",
		Long: `Copies the store of the running CA over its admin socket while it keeps
issuing: one consistent instant, with a header (format, schema version,
trust domain, time) and a checksum that restore checks. The backup holds
the store only: keep the key files (the data dir's keys/) or the KMS keys,
and the key passphrase, apart from it. Take one before every upgrade.`,
		Example: `  signet store backup --out /var/backups/signet-$(date +%F).db
  signet store backup --out - | gpg --encrypt -r ops > signet.db.gpg`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(cmd.Context(), env) },
	}
	o.admin.addFlags(cmd.Flags(), env)
	cmd.Flags().StringVar(&o.out, "out", "", "the backup file to write (- for stdout); written whole or not at all")
	return cmd
}

func (o *storeBackupOptions) run(ctx context.Context, env *cliEnv) error {
	if o.out == "" {
		return errors.New("--out FILE is required (- writes to stdout)")
	}
	conn, err := o.admin.conn()
	if err != nil {
		return err
	}
	defer conn.Close()
	if o.out == "-" {
		sum, err := o.receive(ctx, adminv1.NewStoreServiceClient(conn), env.stdout)
		if err != nil {
			return err
		}
		fmt.Fprintln(env.stderr, backupLine("backup written to stdout", sum))
		return nil
	}
	// Written beside the target and renamed once complete and checked:
	// FILE is never a partial backup.
	f, err := os.CreateTemp(filepath.Dir(o.out), "."+filepath.Base(o.out)+".partial-*")
	if err != nil {
		return fmt.Errorf("writing backup: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	sum, err := o.receive(ctx, adminv1.NewStoreServiceClient(conn), f)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("writing backup %s: %w", o.out, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("checking backup: %w", err)
	}
	if _, err := store.ReadBackup(f, io.Discard); err != nil {
		return fmt.Errorf("checking the backup received: %w", err)
	}
	if err := os.Rename(f.Name(), o.out); err != nil {
		return fmt.Errorf("writing backup %s: %w", o.out, err)
	}
	fmt.Fprintln(env.stderr, backupLine("backup written to "+o.out, sum))
	return nil
}

// receive streams the backup into w and returns its summary.
func (o *storeBackupOptions) receive(ctx context.Context, c adminv1.StoreServiceClient, w io.Writer) (*adminv1.BackupSummary, error) {
	stream, err := c.Backup(ctx, &adminv1.BackupRequest{})
	if err != nil {
		return nil, o.admin.rpcError(err)
	}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the CA ended the backup without its summary: the backup is incomplete")
		}
		if err != nil {
			return nil, o.admin.rpcError(err)
		}
		if len(msg.Data) > 0 {
			if _, err := w.Write(msg.Data); err != nil {
				return nil, fmt.Errorf("writing backup: %w", err)
			}
		}
		if msg.Summary != nil {
			return msg.Summary, nil
		}
	}
}

func backupLine(what string, s *adminv1.BackupSummary) string {
	return fmt.Sprintf("%s: %d bytes, trust domain %s, store schema %d, audit head seq %d, taken %s",
		what, s.Bytes, s.TrustDomain, s.SchemaVersion, s.AuditHeadSeq, time.Unix(s.CreatedAt, 0).UTC().Format(time.RFC3339))
}

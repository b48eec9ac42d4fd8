package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/signet-mesh/signet/ca/server"
	"github.com/signet-mesh/signet/ca/store"
)

type storeRestoreOptions struct {
	from    string
	dataDir string
}

func newStoreRestoreCommand(env *cliEnv) *cobra.Command {
	var o storeRestoreOptions
	cmd := &cobra.Command{
		Use:   "restore --from FILE --data-dir DIR",
		Short: "restore a backup into a new data dir (the server must not run on it)",
		Long: `Writes the store of a backup into DIR, which must not hold a store
already: restore refuses a store a running server holds, and any existing
one (move it aside first). It checks the backup's checksum first and
writes nothing from a damaged or truncated file.

The backup holds the store only. Copy the key files (keys/ of the old
data dir) into DIR too, or point the server at the same KMS, and use the
same key passphrase; restore names the key files DIR still lacks.

The server's first start on DIR records the restore in the audit trail
(store.restored, then a checkpoint with reason "restore"), revokes the
join tokens the backup held unused, and serves the agents it knew at the
backup: they reconnect with their stored identity, no new token.`,
		Example: `  signet store restore --from signet-backup.db --data-dir /var/lib/signet-restored`,
		Args:    noArgs,
		RunE:    func(cmd *cobra.Command, args []string) error { return o.run(env) },
	}
	cmd.Flags().StringVar(&o.from, "from", "", "the backup file (signet store backup --out)")
	cmd.Flags().StringVar(&o.dataDir, "data-dir", "", "the data dir to restore into (created if missing)")
	return cmd
}

func (o *storeRestoreOptions) run(env *cliEnv) error {
	switch {
	case o.from == "":
		return errors.New("--from FILE is required (a file from signet store backup --out)")
	case o.dataDir == "":
		return errors.New("--data-dir DIR is required (the data dir the server will run on)")
	}
	f, err := os.Open(o.from)
	if err != nil {
		return fmt.Errorf("reading backup: %w", err)
	}
	defer f.Close()
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return fmt.Errorf("creating data dir: %w", err)
	}
	dbPath := filepath.Join(o.dataDir, server.DBFile)
	res, err := store.RestoreBolt(dbPath, f, time.Now())
	if err != nil {
		return fmt.Errorf("%s: %w", o.from, err)
	}
	h := res.Header
	fmt.Fprintf(env.stdout, "restored %s into %s: trust domain %s, store schema %d, audit head seq %d, taken %s\n",
		o.from, dbPath, h.TrustDomain, h.SchemaVersion, h.AuditHeadSeq, h.CreatedAt.UTC().Format(time.RFC3339))
	var missing []string
	for _, ref := range res.KeyRefs {
		if strings.Contains(ref, ":") || filepath.IsAbs(ref) {
			continue // a KMS key, or a key the data dir does not hold
		}
		rel := filepath.Join(server.KeysDir, ref)
		if _, err := os.Stat(filepath.Join(o.dataDir, rel)); err != nil {
			missing = append(missing, rel)
		}
	}
	if len(missing) > 0 {
		fmt.Fprintf(env.stderr, "the server needs these key files before it starts; copy them from the old data dir into %s: %s\n",
			o.dataDir, strings.Join(missing, ", "))
	}
	fmt.Fprintf(env.stdout, "start the server with --data-dir %s --trust-domain %s; its first start records the restore in the audit trail\n", o.dataDir, h.TrustDomain)
	return nil
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/signet-mesh/signet/ca/server"
	"github.com/signet-mesh/signet/ca/store"
	"github.com/signet-mesh/signet/ca/store/etcdstore"
	"github.com/signet-mesh/signet/cmd/internal/cli"
)

type storeRestoreOptions struct {
	from    string
	dataDir string
	// The etcd store to restore an etcd backup into (as signet server's
	// store keys, checked by the same code).
	etcd serverConfig
}

func newStoreRestoreCommand(env *cliEnv) *cobra.Command {
	var o storeRestoreOptions
	cmd := &cobra.Command{
		Use:   "restore --from FILE (--data-dir DIR | --store etcd --etcd-endpoints URLS)",
		Short: "restore a backup into a new data dir or an empty etcd prefix (no server may run on it)",
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
backup: they reconnect with their stored identity, no new token.

A backup of an etcd store (signet server --store etcd) restores into an
etcd prefix with --store etcd and the server's etcd flags. The prefix must
hold no key: restore refuses a prefix with a store in it, or a replica's
claim (stop the servers, restore into a new --etcd-prefix). Soft root keys
travel in the store; copy the servers' other key files as above.`,
		Example: `  signet store restore --from signet-backup.db --data-dir /var/lib/signet-restored
  signet store restore --from signet-backup.db --store etcd \
      --etcd-endpoints https://etcd-0:2379 --etcd-prefix /signet-restored \
      --etcd-ca etcd-ca.pem --etcd-cert client.pem --etcd-key client-key.pem`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(env) },
	}
	cmd.Flags().StringVar(&o.from, "from", "", "the backup file (signet store backup --out)")
	cmd.Flags().StringVar(&o.dataDir, "data-dir", "", "the data dir to restore into (created if missing)")
	cmd.Flags().StringVar(&o.etcd.Store, "store", "", "etcd: restore an etcd backup into etcd (a bbolt backup restores into --data-dir)")
	cmd.Flags().StringSliceVar(&o.etcd.EtcdEndpoints, "etcd-endpoints", nil, serverUsages["etcd_endpoints"])
	cmd.Flags().StringVar(&o.etcd.EtcdPrefix, "etcd-prefix", "", "with --store etcd: the empty key prefix to restore into (default /signet)")
	cmd.Flags().StringVar(&o.etcd.EtcdCA, "etcd-ca", "", serverUsages["etcd_ca"])
	cmd.Flags().StringVar(&o.etcd.EtcdCert, "etcd-cert", "", serverUsages["etcd_cert"])
	cmd.Flags().StringVar(&o.etcd.EtcdKey, "etcd-key", "", serverUsages["etcd_key"])
	return cmd
}

func (o *storeRestoreOptions) run(env *cliEnv) error {
	if o.from == "" {
		return errors.New("--from FILE is required (a file from signet store backup --out)")
	}
	f, err := os.Open(o.from)
	if err != nil {
		return fmt.Errorf("reading backup: %w", err)
	}
	defer f.Close()
	h, err := store.ReadBackupHeader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", o.from, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("reading backup: %w", err)
	}
	switch {
	case h.Backend == etcdstore.BackendEtcd && o.etcd.Store != "etcd":
		return fmt.Errorf("%s is a backup of an etcd store: restore it with --store etcd --etcd-endpoints URLS [--etcd-prefix P]", o.from)
	case h.Backend == etcdstore.BackendEtcd:
		return o.runEtcd(env, f)
	case o.etcd.Store == "etcd":
		return fmt.Errorf("%s is a backup of a %s store, not of an etcd store: restore it with --data-dir DIR, without --store etcd", o.from, h.Backend)
	case o.etcd.Store != "" && o.etcd.Store != "bolt":
		return fmt.Errorf("--store %q: want etcd (or bolt, the default)", o.etcd.Store)
	case o.dataDir == "":
		return errors.New("--data-dir DIR is required (the data dir the server will run on)")
	}
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return fmt.Errorf("creating data dir: %w", err)
	}
	dbPath := filepath.Join(o.dataDir, server.DBFile)
	res, err := store.RestoreBolt(dbPath, f, time.Now())
	if err != nil {
		return fmt.Errorf("%s: %w", o.from, err)
	}
	h = res.Header
	fmt.Fprintf(env.stdout, "restored %s into %s: trust domain %s, store schema %d, audit head seq %d, taken %s\n",
		o.from, dbPath, h.TrustDomain, h.SchemaVersion, h.AuditHeadSeq, h.CreatedAt.UTC().Format(time.RFC3339))
	o.reportMissingKeys(env, res.KeyRefs)
	fmt.Fprintf(env.stdout, "start the server with --data-dir %s --trust-domain %s; its first start records the restore in the audit trail\n", o.dataDir, h.TrustDomain)
	return nil
}

// runEtcd restores the etcd backup f into the empty etcd prefix the flags
// name.
func (o *storeRestoreOptions) runEtcd(env *cliEnv, f *os.File) error {
	var cfg server.Config
	if err := o.etcd.storeConfig(&cfg); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), etcdRestoreTimeout)
	defer cancel()
	prefix := cfg.Etcd.Prefix
	if prefix == "" {
		prefix = etcdstore.DefaultPrefix
	}
	res, err := etcdstore.Restore(ctx, etcdstore.Options{Endpoints: cfg.Etcd.Endpoints, TLS: cfg.Etcd.TLS, Prefix: prefix}, f, time.Now())
	if err != nil {
		return fmt.Errorf("%s: %w", o.from, err)
	}
	h := res.Header
	fmt.Fprintf(env.stdout, "restored %s into etcd prefix %s: trust domain %s, store layout %d, audit head seq %d, taken %s\n",
		o.from, prefix, h.TrustDomain, h.SchemaVersion, h.AuditHeadSeq, h.CreatedAt.UTC().Format(time.RFC3339))
	if o.dataDir != "" {
		o.reportMissingKeys(env, res.KeyRefs)
	}
	fmt.Fprintf(env.stdout, "start the servers with --store etcd --etcd-prefix %s --trust-domain %s; the first start records the restore in the audit trail\n", prefix, h.TrustDomain)
	return nil
}

// etcdRestoreTimeout bounds an etcd restore.
const etcdRestoreTimeout = 10 * time.Minute

// reportMissingKeys names the soft key files of refs that o.dataDir lacks.
func (o *storeRestoreOptions) reportMissingKeys(env *cliEnv, refs []string) {
	var missing []string
	for _, ref := range refs {
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
}

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/signet-mesh/signet/ca/audit"
	"github.com/signet-mesh/signet/ca/rotation"
	"github.com/signet-mesh/signet/ca/server"
	"github.com/signet-mesh/signet/ca/store"
	"github.com/signet-mesh/signet/ca/store/etcdstore"
	"github.com/signet-mesh/signet/cmd/internal/cli"
)

type storeMigrateOptions struct {
	from, to                  string
	etcdPrefix                string
	etcdCA, etcdCert, etcdKey string
}

// migrateTimeout bounds connecting to etcd; the copy itself runs as long
// as it needs.
const migrateTimeout = 30 * time.Second

func newStoreMigrateCommand(env *cliEnv) *cobra.Command {
	var o storeMigrateOptions
	cmd := &cobra.Command{
		Use:   "migrate --from bolt:PATH --to etcd:ENDPOINTS",
		Short: "copy a stopped server's bbolt store into an empty etcd prefix",
		Long: `Copies the store of a stopped server (PATH is its data dir or its
signet.db) into etcd, where several replicas can share it: authorities,
entries, nodes and eviction records, join tokens, mTLS policies, the SVID
index, settings and the audit chain with the same seqs and hashes. The
soft root keys of the data dir's keys/ are put in the store as they are on
disk, encrypted under the key passphrase, so that every replica can load
them; intermediate keys stay where they are (each replica makes its own).

migrate refuses a store a running server holds, and an etcd prefix that
already holds a store. It writes in chunks within etcd's default limits,
then checks the audit chain as stored in etcd and prints what it copied.
A failed copy leaves the prefix part written: delete it
(etcdctl del --prefix PREFIX/) before trying again.`,
		Example: `  signet store migrate --from bolt:/var/lib/signet --to etcd:https://etcd-0:2379,https://etcd-1:2379 \
    --etcd-ca /etc/signet/etcd/ca.pem --etcd-cert /etc/signet/etcd/client.pem --etcd-key /etc/signet/etcd/client-key.pem`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(cmd.Context(), env) },
	}
	f := cmd.Flags()
	f.StringVar(&o.from, "from", "", "the stopped server's store: bolt:PATH (its data dir or signet.db)")
	f.StringVar(&o.to, "to", "", "the etcd cluster: etcd:URL[,URL...]")
	f.StringVar(&o.etcdPrefix, "etcd-prefix", "", "the key prefix to copy into, which must be empty (default "+etcdstore.DefaultPrefix+")")
	f.StringVar(&o.etcdCA, "etcd-ca", "", "PEM CA bundle that signed the etcd servers' certificates")
	f.StringVar(&o.etcdCert, "etcd-cert", "", "PEM client certificate for etcd (with --etcd-key)")
	f.StringVar(&o.etcdKey, "etcd-key", "", "PEM key of --etcd-cert")
	return cmd
}

// boltPath returns the store file --from names, refusing one that does
// not exist (store.Open would create it).
func (o *storeMigrateOptions) boltPath() (string, error) {
	path, ok := strings.CutPrefix(o.from, "bolt:")
	if !ok || path == "" {
		return "", fmt.Errorf("--from %q: want bolt:PATH, the data dir or signet.db of the stopped server", o.from)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("--from: %w", err)
	}
	if fi.IsDir() {
		path = filepath.Join(path, server.DBFile)
		if _, err := os.Stat(path); err != nil {
			return "", fmt.Errorf("--from: the data dir holds no store: %w", err)
		}
	}
	return path, nil
}

func (o *storeMigrateOptions) etcdConfig() (*server.EtcdConfig, error) {
	endpoints, ok := strings.CutPrefix(o.to, "etcd:")
	if !ok || endpoints == "" {
		return nil, fmt.Errorf("--to %q: want etcd:URL[,URL...], like etcd:https://etcd-0:2379,https://etcd-1:2379", o.to)
	}
	c := serverConfig{Store: "etcd", EtcdPrefix: o.etcdPrefix, EtcdCA: o.etcdCA, EtcdCert: o.etcdCert, EtcdKey: o.etcdKey}
	for e := range strings.SplitSeq(endpoints, ",") {
		c.EtcdEndpoints = append(c.EtcdEndpoints, strings.TrimSpace(e))
	}
	var out server.Config
	if err := c.storeConfig(&out); err != nil {
		return nil, err
	}
	return out.Etcd, nil
}

func (o *storeMigrateOptions) run(ctx context.Context, env *cliEnv) error {
	path, err := o.boltPath()
	if err != nil {
		return err
	}
	ecfg, err := o.etcdConfig()
	if err != nil {
		return err
	}
	src, err := store.Open(path, store.Options{})
	if errors.Is(err, store.ErrLocked) {
		return fmt.Errorf("--from %s: a running server holds the store: stop it first, migrate copies a stopped server's store", path)
	}
	if err != nil {
		return err
	}
	defer src.Close()
	octx, cancel := context.WithTimeout(ctx, migrateTimeout)
	dst, err := etcdstore.Open(octx, etcdstore.Options{Endpoints: ecfg.Endpoints, TLS: ecfg.TLS, Prefix: ecfg.Prefix, Name: "signet-store-migrate"})
	cancel()
	if err != nil {
		return err
	}
	defer dst.Close()
	prefix := orDefaultPrefix(ecfg.Prefix)

	start := time.Now()
	n, err := dst.Import(ctx, src)
	if errors.Is(err, etcdstore.ErrNotEmpty) {
		return fmt.Errorf("etcd prefix %s already holds a store: migrate copies into an empty prefix only (choose another --etcd-prefix, or delete it with etcdctl del --prefix %s/)", prefix, prefix)
	}
	if err != nil {
		return fmt.Errorf("copying %s into etcd prefix %s (delete the prefix before trying again): %w", path, prefix, err)
	}
	shared, missing, err := shareRootKeys(ctx, dst, filepath.Join(filepath.Dir(path), server.KeysDir))
	if err != nil {
		return err
	}
	keys, err := rotation.CheckpointKeys(ctx, dst)
	if err != nil {
		return err
	}
	rep, err := audit.VerifyStore(ctx, dst, keys)
	if err != nil {
		return fmt.Errorf("the audit chain copied into etcd does not verify: %w", err)
	}
	fmt.Fprintf(env.stdout, "copied %s into etcd prefix %s in %s:\n", path, prefix, time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(env.stdout, "  authorities %d, entries %d, nodes %d, evicted nodes %d, join tokens %d, mtls policies %d, settings %d, root keys shared %d\n",
		n.Authorities, n.Entries, n.Nodes, n.Evicted, n.Tokens, n.MTLSPolicies, n.Meta, shared)
	fmt.Fprintf(env.stdout, "  svids %d (current %d), revision %d\n", n.SVIDs, n.CurrentSVIDs, n.Revision)
	fmt.Fprintf(env.stdout, "  audit records %d (seq %d to %d), chain verified, %d checkpoints signed\n", rep.Records, rep.FirstSeq, rep.LastSeq, rep.Checkpoints)
	if len(missing) > 0 {
		fmt.Fprintf(env.stderr, "these root key files were not found, so replicas on other machines cannot load them; copy them into each replica's data dir: %s\n", strings.Join(missing, ", "))
	}
	fmt.Fprintf(env.stdout, "start the replicas with --store etcd --etcd-endpoints %s --etcd-prefix %s and a --server-name each; keep %s aside (do not run a server on it again)\n",
		strings.Join(ecfg.Endpoints, ","), prefix, path)
	return nil
}

func orDefaultPrefix(s string) string {
	if s == "" {
		return etcdstore.DefaultPrefix
	}
	return s
}

// shareRootKeys puts the encrypted key file of every soft root key found
// in keysDir into st, where replicas look for it (server.SharedRootKeyMeta),
// and names those it did not find. KMS keys stay in the KMS.
func shareRootKeys(ctx context.Context, st store.Store, keysDir string) (shared int, missing []string, err error) {
	err = st.Update(ctx, func(tx store.Tx) error {
		shared, missing = 0, nil
		auths, err := tx.ListAuthorities()
		if err != nil {
			return err
		}
		for _, a := range auths {
			if a.Kind != store.KindRoot || a.State == store.StateRetired || a.KeyRef == "" || strings.Contains(a.KeyRef, ":") || filepath.IsAbs(a.KeyRef) {
				continue
			}
			if v, err := tx.GetMeta(server.SharedRootKeyMeta(a.KeyRef)); err == nil && len(v) > 0 {
				continue
			}
			pemBytes, err := os.ReadFile(filepath.Join(keysDir, a.KeyRef))
			if err != nil {
				missing = append(missing, filepath.Join(keysDir, a.KeyRef))
				continue
			}
			if err := tx.PutMeta(server.SharedRootKeyMeta(a.KeyRef), pemBytes); err != nil {
				return err
			}
			shared++
		}
		return nil
	})
	if err != nil {
		return 0, nil, fmt.Errorf("sharing the root keys: %w", err)
	}
	return shared, missing, nil
}

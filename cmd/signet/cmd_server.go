package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.step.sm/crypto/kms/apiv1"
	"go.step.sm/crypto/kms/uri"

	"github.com/signet-mesh/signet/ca/keys"
	"github.com/signet-mesh/signet/ca/rotation"
	"github.com/signet-mesh/signet/ca/server"
	"github.com/signet-mesh/signet/cmd/internal/cli"
	"github.com/signet-mesh/signet/internal/peercred"
)

// serverConfig is the server's configuration file (YAML); each key is also
// a flag and a SIGNET_* environment variable.
type serverConfig struct {
	TrustDomain       string       `json:"trust_domain"`
	DataDir           string       `json:"data_dir"`
	Listen            string       `json:"listen"`
	AdminSocket       string       `json:"admin_socket"`
	AdminUIDs         []uint32     `json:"admin_uids"`
	MetricsListen     string       `json:"metrics_listen"`
	KeyType           string       `json:"key_type"`
	KMSURI            string       `json:"kms_uri"`
	KeyPassphraseFile string       `json:"key_passphrase_file"`
	RootTTL           cli.Duration `json:"root_ttl"`
	IntermediateTTL   cli.Duration `json:"intermediate_ttl"`
	RootRotation      string       `json:"root_rotation"`
	MTLSWindow        cli.Duration `json:"mtls_window"`
	LogLevel          string       `json:"log_level"`
	LogFormat         string       `json:"log_format"`
	// Importing existing PKI on first start (ignored once a root exists).
	ImportRootCert          string `json:"import_root_cert"`
	ImportRootKey           string `json:"import_root_key"`
	ImportIntermediateCert  string `json:"import_intermediate_cert"`
	ImportIntermediateChain string `json:"import_intermediate_chain"`
	ImportIntermediateKey   string `json:"import_intermediate_key"`
	ImportKeyPassphraseFile string `json:"import_key_passphrase_file"`
	// The bundle endpoint other trust domains federate through
	// (server_federation.go).
	FederationListen      string       `json:"federation_listen"`
	FederationProfile     string       `json:"federation_profile"`
	FederationCertFile    string       `json:"federation_cert_file"`
	FederationKeyFile     string       `json:"federation_key_file"`
	FederationRefreshHint cli.Duration `json:"federation_refresh_hint"`
	// Kubernetes clusters whose agents attest with k8s_psat (file only).
	K8sClusters []k8sClusterConfig `json:"k8s_clusters,fileonly"`
	// Several replicas on etcd (cmd_server_etcd.go).
	Store         string   `json:"store"`
	EtcdEndpoints []string `json:"etcd_endpoints"`
	EtcdPrefix    string   `json:"etcd_prefix"`
	EtcdCA        string   `json:"etcd_ca"`
	EtcdCert      string   `json:"etcd_cert"`
	EtcdKey       string   `json:"etcd_key"`
	ServerName    string   `json:"server_name"`
	// Go's profiles for the operator (server_debug.go).
	DebugListen string `json:"debug_listen"`
}

var serverUsages = map[string]string{
	"trust_domain":               "trust domain of the CA",
	"data_dir":                   "directory for the store and encrypted keys (required)",
	"listen":                     "node API address (TCP, TLS)",
	"admin_socket":               "admin API Unix socket (mode 0600; default <data_dir>/admin.sock)",
	"admin_uids":                 "comma-separated uids allowed on the admin socket besides the server's own",
	"metrics_listen":             "address for /metrics, /healthz and /readyz (empty: off)",
	"key_type":                   "key type of new authorities: EC-P256, EC-P384, RSA-3072, RSA-4096",
	"kms_uri":                    "key manager URI (softkms: default; pkcs11:..., awskms:..., cloudkms:..., azurekms:...)",
	"key_passphrase_file":        "file holding the passphrase that encrypts keys at rest (or env SIGNET_KEY_PASSPHRASE)",
	"root_ttl":                   "lifetime of new roots (default 365d)",
	"intermediate_ttl":           "lifetime of the per-server intermediate, at most root_ttl (default 7d)",
	"root_rotation":              "manual (signet root prepare/activate/retire) or auto (prepare at 1/2 of the root's life, activate at 5/6, retire when safe)",
	"mtls_window":                "how far back mtls status and the STRICT readiness check look at connection counts (default 10m)",
	"log_level":                  "debug, info, warn or error",
	"log_format":                 "text or json",
	"import_root_cert":           "first start only: use this self-signed root (PEM) instead of creating one",
	"import_root_key":            "private key (PEM) of import_root_cert",
	"import_intermediate_cert":   "first start only: sign SVIDs under this CA certificate issued by your own PKI",
	"import_intermediate_chain":  "PEM chain above import_intermediate_cert, up to the root(s) that become the trust bundle",
	"import_intermediate_key":    "private key (PEM) of import_intermediate_cert",
	"import_key_passphrase_file": "passphrase of an encrypted import key",
	"federation_listen":          "address of the SPIFFE bundle endpoint other trust domains federate through (empty: off)",
	"federation_profile":         "bundle endpoint profile: https_spiffe (served with the server's SVID) or https_web (federation_cert_file and federation_key_file)",
	"federation_cert_file":       "https_web: PEM certificate (chain) of the bundle endpoint, reloaded when it changes",
	"federation_key_file":        "https_web: PEM private key of federation_cert_file",
	"federation_refresh_hint":    "spiffe_refresh_hint the bundle endpoint serves (default 5m)",
	"k8s_clusters":               "config file only: Kubernetes clusters whose agents attest with k8s_psat, a list of {name, kubeconfig (empty: in-cluster), service_account_allow_list: [namespace:name], audience (default signet), auto_identity (every pod gets spiffe://<td>/ns/<ns>/sa/<sa>)}",
	"store":                      "where the CA keeps its state: bolt (a file in data_dir) or etcd (shared by several replicas)",
	"etcd_endpoints":             "with store etcd: etcd client URLs (repeat the flag or give a comma list)",
	"etcd_prefix":                "with store etcd: key prefix of this CA's state (default /signet)",
	"etcd_ca":                    "with store etcd: PEM CA bundle that verifies etcd's serving certificates",
	"etcd_cert":                  "with store etcd: client certificate (PEM) for etcd",
	"etcd_key":                   "with store etcd: private key (PEM) of etcd_cert",
	"server_name":                "this replica's name among the CA servers sharing a store (default: the host name with etcd, default with bolt)",
	"debug_listen":               "loopback address serving Go's /debug/pprof/ profiles of the server, for measuring memory and CPU (empty: off)",
}

// defaultServerConfig has no data_dir: a server's state is precious, so it
// lives where the operator says (dev keeps its own in ./signet-data).
func defaultServerConfig() serverConfig {
	return serverConfig{
		TrustDomain: cli.DefaultTrustDomain,
		Listen:      "127.0.0.1:8081",
		KeyType:     string(keys.KeyTypeECP256),
		LogLevel:    "info",
		LogFormat:   "text",
	}
}

// errNoDataDir is the one line a server without a data directory prints.
var errNoDataDir = errors.New("signet server needs a data directory: give --data-dir DIR (or data_dir in --config); signet dev is the all-in-one that keeps its state in ./signet-data")

// toServerConfig validates c and builds the typed configuration, naming
// the key of any bad value. Start and --check-config both call it, so the
// check refuses what a start would.
func (c serverConfig) toServerConfig() (server.Config, string, error) {
	var out server.Config
	td, err := spiffeid.TrustDomainFromString(c.TrustDomain)
	if err != nil {
		return out, "", fmt.Errorf("trust_domain %q: %v", c.TrustDomain, err)
	}
	if c.DataDir == "" {
		return out, "", errNoDataDir
	}
	if err := cli.CheckWritableDir("data_dir", c.DataDir); err != nil {
		return out, "", err
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return out, "", fmt.Errorf("listen %q: must be host:port", c.Listen)
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			return out, "", fmt.Errorf("metrics_listen %q: must be host:port", c.MetricsListen)
		}
	}
	kt, err := keys.ParseKeyType(c.KeyType)
	if err != nil {
		return out, "", fmt.Errorf("key_type %q: %v", c.KeyType, err)
	}
	if err := checkKMS(c.KMSURI); err != nil {
		return out, "", err
	}
	if c.RootTTL < 0 || c.IntermediateTTL < 0 {
		return out, "", fmt.Errorf("root_ttl and intermediate_ttl must be positive")
	}
	rootTTL, interTTL := time.Duration(c.RootTTL), time.Duration(c.IntermediateTTL)
	if rootTTL == 0 {
		rootTTL = rotation.DefaultRootTTL
	}
	if interTTL == 0 {
		interTTL = rotation.DefaultIntermediateTTL
	}
	if interTTL > rootTTL {
		return out, "", fmt.Errorf("intermediate_ttl %s is longer than root_ttl %s: an intermediate cannot outlive the root that signs it", cli.FormatDuration(interTTL), cli.FormatDuration(rootTTL))
	}
	var autoRoots bool
	switch c.RootRotation {
	case "", "manual":
	case "auto":
		autoRoots = true
	default:
		return out, "", fmt.Errorf("root_rotation %q: want manual or auto", c.RootRotation)
	}
	if c.MTLSWindow < 0 {
		return out, "", fmt.Errorf("mtls_window %s: must be positive", cli.DurationOf(c.MTLSWindow))
	}
	var pass []byte
	if isSoftKMS(c.KMSURI) {
		pass, err = keys.LoadPassphrase(c.KeyPassphraseFile, cli.PassphraseEnv)
		if err != nil {
			return out, "", fmt.Errorf("key_passphrase_file: %v", err)
		}
	}
	var importPass []byte
	if c.ImportKeyPassphraseFile != "" {
		if importPass, err = keys.LoadPassphrase(c.ImportKeyPassphraseFile, ""); err != nil {
			return out, "", fmt.Errorf("import_key_passphrase_file: %v", err)
		}
	}
	importRoot, err := importFiles("import_root", c.ImportRootCert, "", c.ImportRootKey, importPass)
	if err != nil {
		return out, "", err
	}
	importInter, err := importFiles("import_intermediate", c.ImportIntermediateCert, c.ImportIntermediateChain, c.ImportIntermediateKey, importPass)
	if err != nil {
		return out, "", err
	}
	if importRoot != nil && importInter != nil {
		return out, "", fmt.Errorf("import_root_cert and import_intermediate_cert are exclusive: signet needs one CA to sign its intermediates")
	}
	if err := c.checkFederation(); err != nil {
		return out, "", err
	}
	if err := c.checkDebugListen(); err != nil {
		return out, "", err
	}
	admin := c.AdminSocket
	if admin == "" {
		admin = filepath.Join(c.DataDir, adminSocketName)
	}
	if _, err := cli.CheckSocketLen(admin); err != nil {
		return out, "", fmt.Errorf("admin_socket %v", err)
	}
	if err := cli.CheckWritableDir("admin_socket", filepath.Dir(admin)); err != nil {
		return out, "", err
	}
	out = server.Config{
		TrustDomain:        td,
		DataDir:            c.DataDir,
		AdminUIDs:          c.AdminUIDs,
		KeyType:            kt,
		KMSURI:             c.KMSURI,
		Passphrase:         pass,
		RootTTL:            cli.DurationOf(c.RootTTL),
		IntermediateTTL:    cli.DurationOf(c.IntermediateTTL),
		AutoRotateRoots:    autoRoots,
		MTLSWindow:         cli.DurationOf(c.MTLSWindow),
		ImportRoot:         importRoot,
		ImportIntermediate: importInter,
	}
	if out.K8sPSAT, err = c.k8sAttestor(); err != nil {
		return out, "", err
	}
	if err := c.storeConfig(&out); err != nil {
		return out, "", err
	}
	return out, admin, nil
}

// isSoftKMS reports whether a kms_uri selects the file-based soft keys.
func isSoftKMS(u string) bool {
	return u == "" || strings.EqualFold(strings.TrimSuffix(u, ":"), string(apiv1.SoftKMS))
}

// checkKMS refuses a kms_uri that a start would refuse, without opening
// the KMS: an unknown type, one signet cannot create keys in, one not
// linked into this binary, and PKCS#11 in a binary built without cgo.
func checkKMS(raw string) error {
	if isSoftKMS(raw) {
		return nil
	}
	typ, err := (&apiv1.Options{URI: raw}).GetType()
	if err != nil {
		return fmt.Errorf("kms_uri %q: %v", raw, err)
	}
	switch typ {
	case apiv1.PKCS11:
		if !cgoEnabled {
			return fmt.Errorf("kms_uri %q: PKCS#11 needs a signet built with cgo (CGO_ENABLED=1); this binary was built without it", raw)
		}
	case apiv1.AmazonKMS, apiv1.AzureKMS, apiv1.CloudKMS:
	default:
		return fmt.Errorf("kms_uri %q: signet cannot create keys in a %s key manager; use softkms, pkcs11, awskms, cloudkms or azurekms", raw, typ)
	}
	if _, ok := apiv1.LoadKeyManagerNewFunc(typ); !ok {
		return fmt.Errorf("kms_uri %q: %s is not linked into this binary: build signet with -tags cloudkms", raw, typ)
	}
	u, err := uri.Parse(raw)
	if err != nil {
		return fmt.Errorf("kms_uri %q: %v", raw, err)
	}
	if typ == apiv1.CloudKMS && u.Get("key-ring") == "" {
		return fmt.Errorf("kms_uri %q: cloudkms needs a key-ring parameter (projects/P/locations/L/keyRings/R)", raw)
	}
	return nil
}

// importFiles checks an import's files exist and builds its description.
func importFiles(prefix, cert, chain, key string, pass []byte) (*rotation.Import, error) {
	if cert == "" && key == "" && chain == "" {
		return nil, nil
	}
	if cert == "" || key == "" {
		return nil, fmt.Errorf("%s_cert and %s_key must be given together", prefix, prefix)
	}
	for name, path := range map[string]string{prefix + "_cert": cert, prefix + "_key": key, prefix + "_chain": chain} {
		if path == "" {
			continue
		}
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("%s: %v", name, err)
		}
	}
	return &rotation.Import{CertFile: cert, ChainFile: chain, KeyFile: key, KeyPassphrase: pass}, nil
}

// serverOptions are the flags of `signet server`: every config key, plus
// --config and --check-config.
type serverOptions struct {
	cfg       serverConfig
	apply     func() error
	checkOnly bool
}

func (o *serverOptions) addFlags(fs *pflag.FlagSet, env *cliEnv) {
	o.cfg = defaultServerConfig()
	_, o.apply = cli.RegisterConfigFlags(fs, &o.cfg, serverUsages, env.getenv)
	fs.BoolVar(&o.checkOnly, "check-config", false, "validate the configuration as a start would, then exit")
}

func newServerCommand(env *cliEnv) *cobra.Command {
	var o serverOptions
	cmd := &cobra.Command{
		Use:   "server",
		Short: "run the CA server",
		Long: `Run the CA: the node API agents attest and mint over (--listen), and the
admin API the operator commands call (--admin-socket). Every flag is also a
key of the --config file and a SIGNET_* environment variable; flags win over
the environment, which wins over the file. The key passphrase comes from
--key-passphrase-file or SIGNET_KEY_PASSPHRASE.`,
		Example: `  signet server --trust-domain example.org --data-dir /var/lib/signet \
      --listen 0.0.0.0:8081 --admin-socket /run/signet/admin.sock
  signet server --config /etc/signet/server.yaml
  signet server --config /etc/signet/server.yaml --check-config
  signet server --data-dir /var/lib/signet --store etcd --server-name ca-1 \
      --etcd-endpoints https://etcd-0:2379,https://etcd-1:2379,https://etcd-2:2379`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context(), env) },
	}
	o.addFlags(cmd.Flags(), env)
	return cmd
}

// serverGCPercent is the CA's GOGC once its live heap has passed
// serverGCThreshold (Go's is 100). Most of a large CA's heap is the state
// of its agents' connections, live as long as they are; Go's pacer sizes
// the heap's headroom from that heap plus the connections' goroutine
// stacks, so at 100 the CA held about twice its live memory. At 50,
// 10,000 agents (signet bench fleet) left the CA 807 to 850 MB of
// anonymous memory at its largest sample instead of 1,114, for more GC
// work in the storms: in back-to-back runs the fleet's attestation took
// 147 s instead of 124 and its reconnection 61 s instead of 52. A small
// CA keeps Go's default: below 4 MB of heap Go does not collect at all,
// and at 50 an idle CA would, for 0.6 to 1.1 MB more resident memory.
// GOGC in the environment still wins.
const (
	serverGCPercent   = 50
	serverGCThreshold = 64 << 20 // about 2,000 connected agents
)

func (o *serverOptions) run(ctx context.Context, env *cliEnv) error {
	if err := o.apply(); err != nil {
		return err
	}
	logger, err := cli.NewLogger(env.stderr, o.cfg.LogLevel, o.cfg.LogFormat)
	if err != nil {
		return err
	}
	scfg, adminPath, err := o.cfg.toServerConfig()
	if err != nil {
		return err
	}
	if o.checkOnly {
		fmt.Fprintln(env.stdout, "configuration is valid")
		return nil
	}
	scfg.Logger = logger
	tel, err := cli.ListenTelemetry(o.cfg.MetricsListen)
	if err != nil {
		return err
	}
	defer tel.Close()
	scfg.Metrics = newServerMetrics(tel)
	srv, err := newCAServer(ctx, scfg, env.getenv, env.stderr)
	if err != nil {
		return err
	}
	defer srv.Close()
	nodeLn, err := net.Listen("tcp", o.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", o.cfg.Listen, err)
	}
	if err := os.MkdirAll(filepath.Dir(adminPath), 0o700); err != nil {
		return fmt.Errorf("admin_socket directory: %w", err)
	}
	adminLn, err := peercred.Listen(adminPath, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(adminPath)
	if err := o.cfg.serveFederation(srv, logger); err != nil {
		return err
	}
	if err := o.cfg.serveDebug(ctx, logger); err != nil {
		return err
	}
	logger.Info("serving", logTrustDomain, scfg.TrustDomain.Name(), logNodeAPI, nodeLn.Addr().String(),
		logAdminSocket, adminPath, logMetrics, tel.MetricsURL(), logHealth, tel.HealthDescription("grpc.health.v1 on the admin socket"))
	defer cli.LogShutdown(ctx, logger)()
	cli.GCPercentAbove(serverGCThreshold, serverGCPercent)
	return tel.Run(ctx, srv.Ready, func(ctx context.Context) error { return srv.Serve(ctx, nodeLn, adminLn) })
}

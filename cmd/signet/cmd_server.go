package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-mesh/signet/ca/keys"
	"github.com/signet-mesh/signet/ca/rotation"
	"github.com/signet-mesh/signet/ca/server"
	"github.com/signet-mesh/signet/internal/peercred"
)

func serverCommand() *command {
	return &command{name: "server", summary: "run the CA server", run: runServer}
}

// serverConfig is the server's configuration file (YAML); each key is also
// a flag and a SIGNET_* environment variable.
type serverConfig struct {
	TrustDomain       string   `json:"trust_domain"`
	DataDir           string   `json:"data_dir"`
	Listen            string   `json:"listen"`
	AdminSocket       string   `json:"admin_socket"`
	AdminUIDs         []uint32 `json:"admin_uids"`
	MetricsListen     string   `json:"metrics_listen"`
	KeyType           string   `json:"key_type"`
	KMSURI            string   `json:"kms_uri"`
	KeyPassphraseFile string   `json:"key_passphrase_file"`
	RootTTL           duration `json:"root_ttl"`
	IntermediateTTL   duration `json:"intermediate_ttl"`
	RootRotation      string   `json:"root_rotation"`
	MTLSWindow        duration `json:"mtls_window"`
	LogLevel          string   `json:"log_level"`
	LogFormat         string   `json:"log_format"`
	// Importing existing PKI on first start (ignored once a root exists).
	ImportRootCert          string `json:"import_root_cert"`
	ImportRootKey           string `json:"import_root_key"`
	ImportIntermediateCert  string `json:"import_intermediate_cert"`
	ImportIntermediateChain string `json:"import_intermediate_chain"`
	ImportIntermediateKey   string `json:"import_intermediate_key"`
	ImportKeyPassphraseFile string `json:"import_key_passphrase_file"`
}

var serverUsages = map[string]string{
	"trust_domain":               "trust domain of the CA",
	"data_dir":                   "directory for the store and encrypted keys",
	"listen":                     "node API address (TCP, TLS)",
	"admin_socket":               "admin API Unix socket (mode 0600; default <data_dir>/admin.sock)",
	"admin_uids":                 "comma-separated uids allowed on the admin socket besides the server's own",
	"metrics_listen":             "address for /metrics, /healthz and /readyz (empty: off)",
	"key_type":                   "key type of new authorities: EC-P256, EC-P384, RSA-3072, RSA-4096",
	"kms_uri":                    "key manager URI (softkms: default; pkcs11:..., awskms:..., cloudkms:...)",
	"key_passphrase_file":        "file holding the passphrase that encrypts keys at rest (or env SIGNET_KEY_PASSPHRASE)",
	"root_ttl":                   "lifetime of new roots",
	"intermediate_ttl":           "lifetime of the per-server intermediate",
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
}

func defaultServerConfig() serverConfig {
	return serverConfig{
		TrustDomain: defaultTrustDomain,
		DataDir:     defaultDataDir,
		Listen:      "127.0.0.1:8081",
		KeyType:     string(keys.KeyTypeECP256),
		LogLevel:    "info",
		LogFormat:   "text",
	}
}

// passphraseEnv holds the key passphrase itself, for deployments that
// inject secrets as environment variables.
const passphraseEnv = "SIGNET_KEY_PASSPHRASE"

// toServerConfig validates c and builds the typed configuration, naming
// the key of any bad value.
func (c serverConfig) toServerConfig(getenv func(string) string) (server.Config, string, error) {
	var out server.Config
	td, err := spiffeid.TrustDomainFromString(c.TrustDomain)
	if err != nil {
		return out, "", fmt.Errorf("trust_domain %q: %v", c.TrustDomain, err)
	}
	if c.DataDir == "" {
		return out, "", fmt.Errorf("data_dir must be configured")
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
	if c.RootTTL < 0 || c.IntermediateTTL < 0 {
		return out, "", fmt.Errorf("root_ttl and intermediate_ttl must be positive")
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
		return out, "", fmt.Errorf("mtls_window %s: must be positive", durationOf(c.MTLSWindow))
	}
	var pass []byte
	if c.KMSURI == "" || c.KMSURI == "softkms:" {
		pass, err = keys.LoadPassphrase(c.KeyPassphraseFile, passphraseEnv)
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
	admin := c.AdminSocket
	if admin == "" {
		admin = filepath.Join(c.DataDir, adminSocketName)
	}
	out = server.Config{
		TrustDomain:        td,
		DataDir:            c.DataDir,
		AdminUIDs:          c.AdminUIDs,
		KeyType:            kt,
		KMSURI:             c.KMSURI,
		Passphrase:         pass,
		RootTTL:            durationOf(c.RootTTL),
		IntermediateTTL:    durationOf(c.IntermediateTTL),
		AutoRotateRoots:    autoRoots,
		MTLSWindow:         durationOf(c.MTLSWindow),
		ImportRoot:         importRoot,
		ImportIntermediate: importInter,
	}
	return out, admin, nil
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

func runServer(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "server", "signet server [--config server.yaml] [flags]")
	cfg := defaultServerConfig()
	_, apply := registerConfigFlags(fs, &cfg, serverUsages, env.getenv)
	checkOnly := fs.Bool("check-config", false, "validate the configuration and exit")
	if err := loadConfig(fs, args, apply); err != nil {
		return err
	}
	logger, err := newLogger(env.stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	scfg, adminPath, err := cfg.toServerConfig(env.getenv)
	if err != nil {
		return err
	}
	if *checkOnly {
		fmt.Fprintln(env.stdout, "configuration is valid")
		return nil
	}
	scfg.Logger = logger
	tel, err := listenTelemetry(cfg.MetricsListen)
	if err != nil {
		return err
	}
	defer tel.close()
	scfg.Metrics = newServerMetrics(tel)
	srv, err := newCAServer(ctx, scfg, env.getenv, env.stderr)
	if err != nil {
		return err
	}
	defer srv.Close()
	nodeLn, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	if err := os.MkdirAll(filepath.Dir(adminPath), 0o700); err != nil {
		return fmt.Errorf("admin_socket directory: %w", err)
	}
	adminLn, err := peercred.Listen(adminPath, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(adminPath)
	return tel.run(ctx, srv.Ready, func(ctx context.Context) error { return srv.Serve(ctx, nodeLn, adminLn) })
}

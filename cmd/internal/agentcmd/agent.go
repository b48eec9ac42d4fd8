package agentcmd

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/signet-mesh/signet/agent"
	"github.com/signet-mesh/signet/agent/attestor"
	"github.com/signet-mesh/signet/agent/cache"
	"github.com/signet-mesh/signet/agent/nodesvid"
	"github.com/signet-mesh/signet/agent/proxyapi"
	"github.com/signet-mesh/signet/agent/workloadapi"
	"github.com/signet-mesh/signet/cmd/internal/cli"
	"github.com/signet-mesh/signet/internal/keypass"
	sdsserver "github.com/signet-mesh/signet/sds/server"
)

// agentGCPercent is the agent's GOGC default (Go's is 100). With 1000
// SVIDs the agent's live heap is about 7 MB; 25 keeps its peak within
// 2 MB of that, for GC work that costs a 1000-entry sync about a quarter
// of a second (BenchmarkAgentRSS, BenchmarkAgentSync1000).
const agentGCPercent = 25

// Config is the agent's configuration file (YAML); each key is also a
// flag and a SIGNET_* environment variable.
type Config struct {
	ServerAddress     []string `json:"server_address"`
	TrustDomain       string   `json:"trust_domain"`
	TrustBundle       string   `json:"trust_bundle"`
	InsecureBootstrap bool     `json:"insecure_bootstrap"`
	JoinToken         string   `json:"join_token"`
	JoinTokenFile     string   `json:"join_token_file"`
	Socket            string   `json:"socket"`
	DataDir           string   `json:"data_dir"`
	MetricsListen     string   `json:"metrics_listen"`
	KeyPassphraseFile string   `json:"key_passphrase_file"`
	LogLevel          string   `json:"log_level"`
	LogFormat         string   `json:"log_format"`
	// Kubernetes (issue 15).
	NodeAttestor string `json:"node_attestor"`
	K8sCluster   string `json:"k8s_cluster"`
	K8sTokenFile string `json:"k8s_token_file"`
	// Workload attestation.
	WorkloadAttestors string `json:"workload_attestors"`
	K8sKubeconfig     string `json:"k8s_kubeconfig"`
	K8sNodeName       string `json:"k8s_node_name"`
}

// Usages are the help texts of the config keys (and so of the flags).
var Usages = map[string]string{
	"server_address":      "CA node API address (host:port); repeat the flag or give a comma list for several replicas",
	"trust_domain":        "trust domain",
	"trust_bundle":        "PEM file with the CA's roots, to authenticate the CA on first contact",
	"insecure_bootstrap":  "attest without authenticating the CA (DEVELOPMENT ONLY)",
	"join_token":          "single-use join token (only needed when data_dir holds no node identity)",
	"join_token_file":     "file holding the join token, e.g. a mounted Secret (a missing file is ignored)",
	"socket":              "Unix socket for the Workload API and SDS (clients find it there, or through SPIFFE_ENDPOINT_SOCKET)",
	"data_dir":            "directory for the node SVID (key encrypted) and the last bundle",
	"metrics_listen":      "address for /metrics, /healthz and /readyz (empty: off)",
	"key_passphrase_file": "file holding the passphrase that encrypts the node key (or env SIGNET_KEY_PASSPHRASE)",
	"log_level":           "debug, info, warn or error",
	"log_format":          "text or json",
	"node_attestor":       "how the node proves itself to the CA: join_token, or k8s_psat (the agent pod's projected service account token)",
	"k8s_cluster":         "k8s_psat: the cluster's name in the CA's k8s_clusters",
	"k8s_token_file":      "k8s_psat: the projected service account token (audience signet), read again at each attestation",
	"workload_attestors":  "comma-separated: unix (always on), k8s (the caller's pod, from its cgroup and the node's pods in the API server)",
	"k8s_kubeconfig":      "k8s workload attestation: kubeconfig to watch the node's pods with (empty: the pod's in-cluster service account)",
	"k8s_node_name":       "k8s workload attestation: this node's name (empty: read from k8s_token_file's claims)",
}

// DefaultConfig is the configuration before the file, the environment and
// the flags.
func DefaultConfig() Config {
	return Config{
		ServerAddress:     []string{"127.0.0.1:8081"},
		TrustDomain:       cli.DefaultTrustDomain,
		Socket:            cli.DefaultAgentSocket,
		DataDir:           "./signet-agent-data",
		LogLevel:          "info",
		LogFormat:         "text",
		NodeAttestor:      "join_token",
		WorkloadAttestors: "unix",
		K8sTokenFile:      nodesvid.DefaultK8sTokenFile,
	}
}

func (c Config) toAgentConfig() (agent.Config, error) {
	var out agent.Config
	td, err := spiffeid.TrustDomainFromString(c.TrustDomain)
	if err != nil {
		return out, fmt.Errorf("trust_domain %q: %v", c.TrustDomain, err)
	}
	if len(c.ServerAddress) == 0 {
		return out, fmt.Errorf("server_address must be configured")
	}
	for _, a := range c.ServerAddress {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return out, fmt.Errorf("server_address %q: must be host:port", a)
		}
	}
	if c.Socket == "" {
		return out, fmt.Errorf("socket must be configured")
	}
	if _, err := cli.SocketPath(c.Socket); err != nil {
		return out, fmt.Errorf("socket %v", err)
	}
	if c.DataDir == "" {
		return out, fmt.Errorf("data_dir must be configured")
	}
	if err := cli.CheckWritableDir("data_dir", c.DataDir); err != nil {
		return out, err
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			return out, fmt.Errorf("metrics_listen %q: must be host:port", c.MetricsListen)
		}
	}
	var (
		joinToken string
		psat      *nodesvid.K8sPSAT
	)
	switch c.NodeAttestor {
	case "", "join_token":
		if c.K8sCluster != "" {
			return out, fmt.Errorf("k8s_cluster is set but node_attestor is %q: give --node-attestor k8s_psat", c.NodeAttestor)
		}
		if joinToken, err = c.joinToken(); err != nil {
			return out, err
		}
	case "k8s_psat":
		if c.JoinToken != "" || c.JoinTokenFile != "" {
			return out, fmt.Errorf("node_attestor k8s_psat attests with the pod's service account token: drop join_token and join_token_file")
		}
		if c.K8sCluster == "" {
			return out, fmt.Errorf("node_attestor k8s_psat needs k8s_cluster: the cluster's name in the CA's k8s_clusters (--k8s-cluster NAME)")
		}
		if c.K8sTokenFile == "" {
			return out, fmt.Errorf("node_attestor k8s_psat needs k8s_token_file (default %s)", nodesvid.DefaultK8sTokenFile)
		}
		psat = &nodesvid.K8sPSAT{Cluster: c.K8sCluster, TokenFile: c.K8sTokenFile}
	default:
		return out, fmt.Errorf("node_attestor %q: want join_token or k8s_psat", c.NodeAttestor)
	}
	if _, err := c.wantsK8sWorkloads(); err != nil {
		return out, err
	}
	if c.TrustBundle == "" && !c.InsecureBootstrap {
		if _, err := os.Stat(filepath.Join(c.DataDir, "bundle.pem")); err != nil {
			return out, fmt.Errorf("trust_bundle must be configured (or insecure_bootstrap for development)")
		}
	}
	out = agent.Config{
		ServerAddress:     strings.Join(c.ServerAddress, ","),
		TrustDomain:       td,
		InsecureBootstrap: c.InsecureBootstrap,
		JoinToken:         joinToken,
		K8sPSAT:           psat,
		DataDir:           c.DataDir,
	}
	if c.TrustBundle != "" {
		if out.TrustBundle, err = agent.LoadBundleFile(c.TrustBundle); err != nil {
			return out, fmt.Errorf("trust_bundle: %v", err)
		}
	}
	return out, nil
}

// agentOptions are the flags of the agent: every config key, plus
// --config and --check-config.
type agentOptions struct {
	cfg       Config
	apply     func() error
	checkOnly bool
}

func (o *agentOptions) addFlags(fs *pflag.FlagSet, env *cli.Env) {
	o.cfg = DefaultConfig()
	_, o.apply = cli.RegisterConfigFlags(fs, &o.cfg, Usages, env.Getenv)
	fs.BoolVar(&o.checkOnly, "check-config", false, "validate the configuration as a start would, then exit")
}

// long is the agent's help.
const long = `Run the node agent: it attests to the CA once (with a join token, or from the
node identity kept in --data-dir), then serves the SPIFFE Workload API and
Envoy SDS on one Unix socket (--socket, default ` + cli.DefaultAgentSocket + `).
Every flag is also a key of the --config file and a SIGNET_* environment
variable; flags win over the environment, which wins over the file.`

// examples are the agent's help examples, run as name.
func examples(name string) string {
	return strings.ReplaceAll(`  signet agent --server-address ca.example.org:8081 --trust-bundle bundle.pem \
      --join-token TOKEN --data-dir /var/lib/signet-agent
  signet agent --server-address signet-server.signet:8081 --trust-bundle /bundle/bundle.pem \
      --node-attestor k8s_psat --k8s-cluster prod   # in a DaemonSet pod
  signet agent --config /etc/signet/agent.yaml
  signet agent --server-address 127.0.0.1:8081 --insecure-bootstrap --join-token TOKEN   # development only`, "signet agent", name)
}

// NewCommand is `signet agent`.
func NewCommand(env *cli.Env) *cobra.Command {
	var o agentOptions
	cmd := &cobra.Command{
		Use:     "agent",
		Short:   "run the node agent",
		Long:    long,
		Example: examples("signet agent"),
		Args:    cli.NoArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context(), env) },
	}
	o.addFlags(cmd.Flags(), env)
	return cmd
}

// Name is the agent binary's name.
const Name = "signet-agent"

// NewRootCommand is the signet-agent binary: the agent itself (the flags
// of `signet agent`), with healthcheck and version beside it, which is
// what an agent's container or systemd unit runs.
func NewRootCommand(env *cli.Env) *cobra.Command {
	var o agentOptions
	root := &cobra.Command{
		Use:   Name,
		Short: "the signet node agent (what `signet agent` runs, in a binary without the CA)",
		Long: long + `

signet-agent is ` + "`signet agent`" + ` in a binary of its own that links none of
the CA, so that it maps less memory on every node. Its healthcheck and
version commands are signet's.`,
		Example:               examples(Name),
		DisableFlagsInUseLine: true,
		SilenceErrors:         true,
		SilenceUsage:          true,
		Args:                  cli.NoArgs,
		RunE:                  func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context(), env) },
	}
	root.SetIn(env.Stdin)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	cli.AddVersionFlag(root, Name, env) // not cobra's Version: see there
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return cli.UsageError(c, err) })
	root.CompletionOptions.DisableDefaultCmd = true
	o.addFlags(root.Flags(), env)
	root.AddCommand(
		cli.NewHealthcheckCommand(Name, env),
		cli.NewVersionCommand(Name, env),
	)
	return root
}

// Main runs one signet-agent command line and returns the process's exit
// code; errors are one line on stderr, prefixed with the binary's name.
func Main(ctx context.Context, env *cli.Env, args []string) int {
	if env.Stdin == nil {
		env.Stdin = strings.NewReader("")
	}
	root := NewRootCommand(env)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(env.Stderr, "%s: %s\n", Name, cli.OneLine(err.Error()))
		return 1
	}
	return 0
}

func (o *agentOptions) run(ctx context.Context, env *cli.Env) error {
	if err := o.apply(); err != nil {
		return err
	}
	cfg := o.cfg
	if p, err := cli.SocketPath(cfg.Socket); err == nil {
		cfg.Socket = p // a unix:// URI, as SPIFFE_ENDPOINT_SOCKET writes it
	}
	logger, err := cli.NewLogger(env.Stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	acfg, err := cfg.toAgentConfig()
	if err != nil {
		return err
	}
	if acfg.KeyPassphrase, err = keypass.Load(cfg.KeyPassphraseFile, cli.PassphraseEnv); err != nil {
		return fmt.Errorf("key_passphrase_file: %v", err)
	}
	if acfg.KeyKDFIterations, err = nodeKeyKDFIterations(env.Getenv); err != nil {
		return err
	}
	if o.checkOnly {
		fmt.Fprintln(env.Stdout, "configuration is valid")
		return nil
	}
	if cfg.InsecureBootstrap {
		logger.Warn("INSECURE BOOTSTRAP: the CA is not authenticated on first contact; anyone able to intercept the connection can impersonate it. Use --trust-bundle outside development.")
	}
	acfg.Logger = logger
	defer cli.LogShutdown(ctx, logger)()
	k8s, err := cfg.k8sWorkloadAttestor(env.Getenv, logger)
	if err != nil {
		return err
	}
	return runAgentProcess(ctx, acfg, cfg.Socket, cfg.MetricsListen, k8s)
}

// runAgentProcess wires an agent to its socket: the Workload API and SDS,
// both attesting callers with the Unix attestor and serving from the
// agent's cache. metricsListen, when set, serves the agent's metrics and
// readiness.
func runAgentProcess(ctx context.Context, cfg agent.Config, socket, metricsListen string, k8s *k8sWorkload) error {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// The agent runs on every node beside the workloads, with a small live
	// set (SVIDs and keys); a tighter GC target keeps its footprint small
	// for a little CPU. GOGC in the environment still wins.
	cli.DefaultGCPercent(agentGCPercent)
	tel, err := cli.ListenTelemetry(metricsListen)
	if err != nil {
		return err
	}
	defer tel.Close()
	cfg.Metrics = newAgentMetrics(tel)
	c := cache.New(cache.Config{TrustDomain: cfg.TrustDomain, Logger: logger})
	cfg.Cache = c
	a, err := agent.New(cfg)
	if err != nil {
		return err
	}
	att := attestor.New(attestor.Config{Logger: logger, Plugins: k8s.plugins()})
	wl := workloadapi.New(workloadapi.Config{Cache: c, Attestor: att, JWTMinter: a, Logger: logger})
	sds := sdsserver.New(sdsserver.Config{Source: sdsSource{c}, Attestor: att, Logger: logger, Metrics: sdsMetrics(cfg.Metrics)})
	px := proxyapi.New(proxyapi.Config{Cache: c, Attestor: att, Policies: a, Reporter: proxyReporter(a, cfg.Metrics), Logger: logger})
	hs := health.NewServer() // for `signet healthcheck --socket`

	if err := os.MkdirAll(filepath.Dir(socket), 0o755); err != nil {
		return fmt.Errorf("socket directory: %w", err)
	}
	// Any local process may connect: attestation decides what it gets.
	ln, err := a.ListenSocket(socket)
	if err != nil {
		return err
	}
	defer ln.Close()
	logger.Info("serving", logSocket, socket, logMetrics, tel.MetricsURL(), logHealth, tel.HealthDescription("grpc.health.v1 on the socket"))
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		opts := []grpc.ServerOption{grpc.ChainStreamInterceptor(cfg.Metrics.StreamInterceptor())}
		return agent.ServeSocketWith(ctx, ln, opts, func(s *grpc.Server) {
			wl.Register(s)
			sds.Register(s)
			px.Register(s)
			healthpb.RegisterHealthServer(s, hs)
		})
	})
	g.Go(func() error { return a.Run(ctx) })
	g.Go(func() error { return k8s.run(ctx) })
	g.Go(func() error { return a.ServeHealth(ctx, hs) })
	g.Go(func() error { return tel.Serve(ctx, a.Ready) })
	g.Go(func() error { return releaseStartupMemory(ctx, a.Ready, debug.FreeOSMemory) })
	return g.Wait()
}

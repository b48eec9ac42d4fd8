package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/signet-mesh/signet/agent"
	"github.com/signet-mesh/signet/agent/attestor"
	"github.com/signet-mesh/signet/agent/cache"
	"github.com/signet-mesh/signet/agent/proxyapi"
	"github.com/signet-mesh/signet/agent/workloadapi"
	"github.com/signet-mesh/signet/ca/server"
	"github.com/signet-mesh/signet/cmd/internal/agentcmd"
	"github.com/signet-mesh/signet/cmd/internal/cli"
	"github.com/signet-mesh/signet/internal/fileutil"
	"github.com/signet-mesh/signet/internal/peercred"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
	sdsserver "github.com/signet-mesh/signet/sds/server"
)

// devNodeName names the dev agent, so its SPIFFE ID is stable across runs.
const devNodeName = "dev"

// devOptions are the flags of `signet dev`.
type devOptions struct {
	dataDir, trustDomain, logLevel string
}

func (o *devOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.dataDir, "data-dir", defaultDataDir, "directory for all state; the sockets are created in it")
	fs.StringVar(&o.trustDomain, "trust-domain", cli.DefaultTrustDomain, "trust domain")
	fs.StringVar(&o.logLevel, "log-level", "warn", "debug, info, warn or error")
}

func newDevCommand(env *cliEnv) *cobra.Command {
	var o devOptions
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "run a CA and an agent in one process (start here)",
		Long: `Run the CA and an agent in one process, with their state under --data-dir.
dev registers an entry for your uid, prints the agent socket, the admin
socket and your SPIFFE ID, and runs until interrupted. A second start
reuses the stored CA, node identity and entries.`,
		Example: `  signet dev
  signet dev --data-dir /tmp/signet-dev --trust-domain dev.example`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context(), env) },
	}
	o.addFlags(cmd.Flags())
	return cmd
}

func (o *devOptions) run(ctx context.Context, env *cliEnv) error {
	// Absolute paths: the banner's commands work from any directory.
	dataDir, err := filepath.Abs(o.dataDir)
	if err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	dataDir = filepath.Clean(dataDir)
	for _, name := range []string{adminSocketName, agentSocketName} {
		if _, err := cli.CheckSocketLen(filepath.Join(dataDir, name)); err != nil {
			return fmt.Errorf("--data-dir %s is too deep for its sockets: %v", dataDir, err)
		}
	}
	td, err := spiffeid.TrustDomainFromString(o.trustDomain)
	if err != nil {
		return fmt.Errorf("--trust-domain %q: %v", o.trustDomain, err)
	}
	logger, err := cli.NewLogger(env.stderr, o.logLevel, "text")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("creating data dir: %w", err)
	}
	pass, err := devPassphrase(env, dataDir)
	if err != nil {
		return err
	}

	srv, err := server.New(ctx, server.Config{TrustDomain: td, DataDir: filepath.Join(dataDir, "server"), Passphrase: pass, Logger: logger})
	if err != nil {
		return err
	}
	defer srv.Close()
	nodeLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	adminPath := filepath.Join(dataDir, adminSocketName)
	adminLn, err := peercred.Listen(adminPath, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(adminPath)

	// Register the dev agent and the caller's entry through the admin API
	// in-process, as an operator would over the socket.
	admin := srv.Admin()
	// Force: on a second start the dev node is already attested (the
	// agent reuses its stored identity and ignores the token), and the CA
	// refuses a plain token for a live node's name.
	tok, err := admin.CreateJoinToken(ctx, &adminv1.CreateJoinTokenRequest{NodeName: devNodeName, Force: true})
	if err != nil {
		return fmt.Errorf("creating dev join token: %w", err)
	}
	uid := strconv.Itoa(os.Getuid())
	workloadID := spiffeid.RequireFromPath(td, "/dev/uid/"+uid)
	_, err = admin.CreateEntries(ctx, &adminv1.CreateEntriesRequest{Entries: []*adminv1.Entry{{
		SpiffeId:  workloadID.String(),
		ParentId:  tok.SpiffeId,
		Selectors: []string{"unix:uid:" + uid},
	}}})
	if err != nil && status.Code(err) != codes.AlreadyExists {
		return fmt.Errorf("registering the dev entry: %w", err)
	}
	bundle, err := srv.Bundle(ctx)
	if err != nil {
		return err
	}

	c := cache.New(cache.Config{TrustDomain: td, Logger: logger})
	a, err := agent.New(agent.Config{
		ServerAddress: nodeLn.Addr().String(),
		TrustDomain:   td,
		TrustBundle:   bundle.X509Authorities,
		JoinToken:     tok.Token,
		DataDir:       filepath.Join(dataDir, "agent"),
		KeyPassphrase: pass,
		Cache:         c,
		Logger:        logger,
	})
	if err != nil {
		return err
	}
	agentPath := filepath.Join(dataDir, agentSocketName)
	agentLn, err := peercred.Listen(agentPath, 0o777)
	if err != nil {
		return err
	}
	defer os.Remove(agentPath)
	att := attestor.New(attestor.Config{Logger: logger})
	wl := workloadapi.New(workloadapi.Config{Cache: c, Attestor: att, JWTMinter: a, Logger: logger})
	sds := sdsserver.New(sdsserver.Config{Source: agentcmd.NewSDSSource(c), Attestor: att, Logger: logger})
	px := proxyapi.New(proxyapi.Config{Cache: c, Attestor: att, Policies: a, Reporter: a, Logger: logger})

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Serve(ctx, nodeLn, adminLn) })
	g.Go(func() error { return a.Run(ctx) })
	hs := health.NewServer() // for `signet healthcheck --socket`
	g.Go(func() error { return a.ServeHealth(ctx, hs) })
	g.Go(func() error {
		return agent.ServeSocket(ctx, agentLn, func(s *grpc.Server) {
			wl.Register(s)
			sds.Register(s)
			px.Register(s)
			healthpb.RegisterHealthServer(s, hs)
		})
	})
	g.Go(func() error {
		if err := waitForSVID(ctx, c, "unix:uid:"+uid); err != nil {
			return nil // shutting down
		}
		printDevBanner(env, td, agentPath, adminPath, workloadID)
		return nil
	})
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// waitForSVID returns once the cache serves an SVID to a workload with the
// given selector.
func waitForSVID(ctx context.Context, c *cache.Cache, selector string) error {
	sub := c.Subscribe([]string{selector})
	defer sub.Close()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case u := <-sub.Updates():
			if u != nil && len(u.Identities) > 0 {
				return nil
			}
		}
	}
}

func printDevBanner(env *cliEnv, td spiffeid.TrustDomain, agentPath, adminPath string, id spiffeid.ID) {
	bin, hint := cliName()
	fmt.Fprintf(env.stdout, `signet dev is running (Ctrl-C to stop)

  trust domain   %s
  agent socket   %s   (SPIFFE Workload API and Envoy SDS)
  admin socket   %s
  your identity  %s

Try:
  %s workload fetch --socket %s
  %s=%s %s entry list
%s`, td.Name(), agentPath, adminPath, id, bin, agentPath, cli.AdminSocketEnv, adminPath, bin, hint)
}

// cliName is how the banner's commands call signet: the path this process
// was started as when it names a built binary ("./signet"), else
// "signet", with a hint to build it when there is none on the PATH (as
// under go run, whose binary is gone when it exits).
func cliName() (name, hint string) {
	arg0 := os.Args[0]
	goRun := strings.Contains(arg0, string(filepath.Separator)+"go-build")
	if strings.ContainsRune(arg0, filepath.Separator) && !goRun {
		return arg0, ""
	}
	if _, err := exec.LookPath("signet"); err == nil {
		return "signet", ""
	}
	return "signet", "\n(signet is not on your PATH: build it with go build -o signet ./cmd/signet, or go install ./cmd/signet)\n"
}

// devPassphrase returns SIGNET_KEY_PASSPHRASE, or a random passphrase kept
// in the data dir. Dev only: it sits beside the keys it protects.
func devPassphrase(env *cliEnv, dataDir string) ([]byte, error) {
	if v := env.getenv(cli.PassphraseEnv); v != "" {
		return []byte(v), nil
	}
	path := filepath.Join(dataDir, "dev-passphrase")
	if data, err := os.ReadFile(path); err == nil && len(data) > 0 {
		return data, nil
	}
	b := make([]byte, 24)
	rand.Read(b)
	pass := []byte(base64.RawURLEncoding.EncodeToString(b))
	if err := fileutil.WriteAtomic(path, pass, 0o600); err != nil {
		return nil, fmt.Errorf("writing dev passphrase: %w", err)
	}
	slog.New(slog.NewTextHandler(env.stderr, nil)).Warn("dev mode: generated a key passphrase and stored it beside the keys; set " + cli.PassphraseEnv + " for anything but development")
	return pass, nil
}

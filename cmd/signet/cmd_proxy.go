package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sync/errgroup"

	"github.com/signet-mesh/signet/cmd/internal/cli"
	"github.com/signet-mesh/signet/sds/client"
	"github.com/signet-mesh/signet/sds/proxy"
	"github.com/signet-mesh/signet/sds/server"
)

// proxyWaitLog is how often `signet proxy` says it still waits for its
// certificate.
const proxyWaitLog = 10 * time.Second

// listenPair is a LISTEN=TARGET flag value.
type listenPair struct{ listen, target string }

func parseListenPairs(flag string, values []string) ([]listenPair, error) {
	var out []listenPair
	for _, v := range values {
		l, t, ok := strings.Cut(v, "=")
		if !ok {
			return nil, fmt.Errorf("--%s %q: want LISTEN=TARGET, both host:port", flag, v)
		}
		for _, a := range []string{l, t} {
			if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
				return nil, fmt.Errorf("--%s %q: %q is not host:port", flag, v, a)
			}
		}
		out = append(out, listenPair{listen: l, target: t})
	}
	return out, nil
}

type proxyOptions struct {
	socket                                  agentSocketOption
	spiffeID                                string
	inbound, outbound, peers, health, allow []string
	reportEvery, detect                     time.Duration
	logLevel, logFormat                     string
}

func (o *proxyOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.socket.flag, "socket", "", o.socket.help()+": SDS and the proxy API")
	fs.StringVar(&o.spiffeID, "spiffe-id", "", "the proxy's identity: its certificate, and whose mTLS mode it enforces")
	fs.StringArrayVar(&o.inbound, "inbound", nil, "`LISTEN=UPSTREAM`: accept on LISTEN, enforce the mTLS mode, forward to UPSTREAM (repeatable)")
	fs.StringArrayVar(&o.outbound, "outbound", nil, "`LISTEN=REMOTE`: accept plaintext on LISTEN, originate mTLS to REMOTE (repeatable)")
	fs.StringArrayVar(&o.peers, "peer-id", nil, "`SPIFFE_ID` the REMOTE of each --outbound must present (one for all, or one per --outbound in order)")
	fs.StringArrayVar(&o.health, "health-port", nil, "`port` of an --inbound LISTEN that passes plaintext in every mode (health checks; repeatable)")
	fs.StringArrayVar(&o.allow, "allow-peer", nil, "`SPIFFE_ID` allowed to connect inbound over mTLS (repeatable; default: any of the trust domain)")
	fs.Var(cli.NewDurationValue(&o.reportEvery, proxy.DefaultReportInterval), "report-interval", "how often connection counts go to the agent")
	fs.Var(cli.NewDurationValue(&o.detect, proxy.DefaultDetectTimeout), "detect-timeout", "PERMISSIVE: how long to wait for a client's first bytes")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "text", "text or json")
}

func newProxyCommand(env *cliEnv) *cobra.Command {
	o := proxyOptions{socket: agentSocketOption{getenv: env.getenv}}
	cmd := &cobra.Command{
		Use:   "proxy --spiffe-id ID (--inbound LISTEN=UPSTREAM | --outbound LISTEN=REMOTE --peer-id ID)...",
		Short: "run the reference sidecar: mTLS over SDS, enforcing the mTLS mode",
		Long: `Run the reference sidecar. It takes its certificate and bundle from the agent
over SDS, and enforces the workload's mTLS mode (STRICT, PERMISSIVE, DISABLE)
on inbound connections, following changes live. Outbound, it turns local
plaintext into mTLS to a peer that must present --peer-id.`,
		Example: `  signet proxy --spiffe-id spiffe://example.org/web \
      --inbound 0.0.0.0:8443=127.0.0.1:8080 --inbound 0.0.0.0:15021=127.0.0.1:8081 --health-port 15021 \
      --outbound 127.0.0.1:15001=db.internal:8443 --peer-id spiffe://example.org/db`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context(), env) },
	}
	o.addFlags(cmd.Flags())
	return cmd
}

func (o *proxyOptions) run(ctx context.Context, env *cliEnv) error {
	logger, err := cli.NewLogger(env.stderr, o.logLevel, o.logFormat)
	if err != nil {
		return err
	}

	// Check everything before listening on anything.
	if o.spiffeID == "" {
		return errors.New("--spiffe-id is required")
	}
	id, err := spiffeid.FromString(o.spiffeID)
	if err != nil {
		return fmt.Errorf("--spiffe-id %q: %v", o.spiffeID, err)
	}
	socket, err := o.socket.path()
	if err != nil {
		return err
	}
	inbound, err := parseListenPairs("inbound", o.inbound)
	if err != nil {
		return err
	}
	outbound, err := parseListenPairs("outbound", o.outbound)
	if err != nil {
		return err
	}
	if len(inbound) == 0 && len(outbound) == 0 {
		return errors.New("nothing to proxy: give at least one --inbound or --outbound")
	}
	peers := make([]spiffeid.ID, 0, len(o.peers))
	for _, p := range o.peers {
		pid, err := spiffeid.FromString(p)
		if err != nil {
			return fmt.Errorf("--peer-id %q: %v", p, err)
		}
		peers = append(peers, pid)
	}
	switch {
	case len(outbound) == 0 && len(peers) > 0:
		return errors.New("--peer-id goes with --outbound")
	case len(outbound) > 0 && len(peers) == 0:
		return errors.New("--outbound needs --peer-id: the SPIFFE ID the remote must present")
	case len(peers) > 1 && len(peers) != len(outbound):
		return fmt.Errorf("%d --peer-id for %d --outbound: give one for all, or one per --outbound", len(peers), len(outbound))
	}
	var allowed []spiffeid.ID
	for _, a := range o.allow {
		aid, err := spiffeid.FromString(a)
		if err != nil {
			return fmt.Errorf("--allow-peer %q: %v", a, err)
		}
		allowed = append(allowed, aid)
	}
	health := map[uint32]bool{}
	for _, h := range o.health {
		n, err := strconv.ParseUint(h, 10, 16)
		if err != nil || n == 0 {
			return fmt.Errorf("--health-port %q: must be a port number, 1-65535", h)
		}
		health[uint32(n)] = true
	}

	var listeners []proxy.Listener
	closeAll := func() {
		for _, l := range listeners {
			switch l := l.(type) {
			case proxy.Inbound:
				l.Listener.Close()
			case proxy.Outbound:
				l.Listener.Close()
			}
		}
	}
	for _, in := range inbound {
		ln, err := net.Listen("tcp", in.listen)
		if err != nil {
			closeAll()
			return fmt.Errorf("--inbound %s: %w", in.listen, err)
		}
		port := uint32(ln.Addr().(*net.TCPAddr).Port)
		listeners = append(listeners, proxy.Inbound{Listener: ln, Upstream: in.target, Health: health[port]})
		delete(health, port)
	}
	for port := range health {
		closeAll()
		return fmt.Errorf("--health-port %d: no --inbound listens on that port", port)
	}
	for i, out := range outbound {
		ln, err := net.Listen("tcp", out.listen)
		if err != nil {
			closeAll()
			return fmt.Errorf("--outbound %s: %w", out.listen, err)
		}
		peer := peers[0]
		if len(peers) > 1 {
			peer = peers[i]
		}
		listeners = append(listeners, proxy.Outbound{Listener: ln, Remote: out.target, PeerID: peer})
	}

	sds := client.New(client.Config{SocketPath: socket, ResourceNames: []string{id.String(), server.RootCAName}, Logger: logger})
	agentClient, err := proxy.DialAgent(proxy.AgentConfig{SocketPath: socket, SPIFFEID: id, Logger: logger})
	if err != nil {
		closeAll()
		return err
	}
	defer agentClient.Close()
	p, err := proxy.New(proxy.Config{
		SPIFFEID:       id,
		Credentials:    proxy.SDSCredentials(sds, id),
		Policy:         agentClient,
		Reporter:       agentClient,
		AllowedPeers:   allowed,
		ReportInterval: o.reportEvery,
		DetectTimeout:  o.detect,
		Logger:         logger,
	})
	if err != nil {
		closeAll()
		return err
	}

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return sds.Run(ctx) })
	g.Go(func() error {
		// The certificate first: a proxy without one can only refuse.
		for {
			wctx, cancel := context.WithTimeout(ctx, proxyWaitLog)
			err := sds.WaitReady(wctx)
			cancel()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				closeAll()
				return nil
			}
			logger.Warn("still waiting for the certificate and bundle over SDS; is this process entitled to the SPIFFE ID?", logSPIFFEID, id.String(), logSocket, socket, logError, err)
		}
		logger.Info("certificate received over SDS", logSPIFFEID, id.String())
		return p.Run(ctx, listeners...)
	})
	return g.Wait()
}

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sync/errgroup"

	"github.com/signet-mesh/signet/sds/client"
	"github.com/signet-mesh/signet/sds/proxy"
	"github.com/signet-mesh/signet/sds/server"
)

// proxyWaitLog is how often `signet proxy` says it still waits for its
// certificate.
const proxyWaitLog = 10 * time.Second

func proxyCommand() *command {
	return &command{name: "proxy", summary: "run the reference sidecar: mTLS over SDS, enforcing the mTLS mode", run: runProxy}
}

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

func runProxy(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "proxy", "signet proxy --socket AGENT_SOCKET --spiffe-id ID --inbound LISTEN=UPSTREAM [--outbound LISTEN=REMOTE --peer-id ID] [--health-port N] [--allow-peer ID]")
	var inboundS, outboundS, peerS, healthS, allowS stringList
	socket := fs.String("socket", defaultAgentConfig().Socket, "the agent's socket (SDS and the proxy API)")
	idS := fs.String("spiffe-id", "", "the proxy's identity: its certificate, and whose mTLS mode it enforces")
	fs.Var(&inboundS, "inbound", "LISTEN=UPSTREAM: accept on LISTEN, enforce the mTLS mode, forward to UPSTREAM (repeatable)")
	fs.Var(&outboundS, "outbound", "LISTEN=REMOTE: accept plaintext on LISTEN, originate mTLS to REMOTE (repeatable)")
	fs.Var(&peerS, "peer-id", "SPIFFE ID the REMOTE of each --outbound must present (one for all, or one per --outbound in order)")
	fs.Var(&healthS, "health-port", "port of an --inbound LISTEN that passes plaintext in every mode (health checks; repeatable)")
	fs.Var(&allowS, "allow-peer", "SPIFFE ID allowed to connect inbound over mTLS (repeatable; default: any of the trust domain)")
	reportEvery := fs.Duration("report-interval", proxy.DefaultReportInterval, "how often connection counts go to the agent")
	detect := fs.Duration("detect-timeout", proxy.DefaultDetectTimeout, "PERMISSIVE: how long to wait for a client's first bytes")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "text or json")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := exactArgs(fs, pos); err != nil {
		return err
	}
	logger, err := newLogger(env.stderr, *logLevel, *logFormat)
	if err != nil {
		return err
	}

	// Check everything before listening on anything.
	if *idS == "" {
		fs.Usage()
		return errors.New("--spiffe-id is required")
	}
	id, err := spiffeid.FromString(*idS)
	if err != nil {
		return fmt.Errorf("--spiffe-id %q: %v", *idS, err)
	}
	if *socket == "" {
		return errors.New("--socket is required")
	}
	inbound, err := parseListenPairs("inbound", inboundS)
	if err != nil {
		return err
	}
	outbound, err := parseListenPairs("outbound", outboundS)
	if err != nil {
		return err
	}
	if len(inbound) == 0 && len(outbound) == 0 {
		fs.Usage()
		return errors.New("nothing to proxy: give at least one --inbound or --outbound")
	}
	peers := make([]spiffeid.ID, 0, len(peerS))
	for _, p := range peerS {
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
	for _, a := range allowS {
		aid, err := spiffeid.FromString(a)
		if err != nil {
			return fmt.Errorf("--allow-peer %q: %v", a, err)
		}
		allowed = append(allowed, aid)
	}
	health := map[uint32]bool{}
	for _, h := range healthS {
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

	sds := client.New(client.Config{SocketPath: *socket, ResourceNames: []string{id.String(), server.RootCAName}, Logger: logger})
	agentClient, err := proxy.DialAgent(proxy.AgentConfig{SocketPath: *socket, SPIFFEID: id, Logger: logger})
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
		ReportInterval: *reportEvery,
		DetectTimeout:  *detect,
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
			logger.Warn("still waiting for the certificate and bundle over SDS; is this process entitled to the SPIFFE ID?", "spiffe_id", id.String(), "socket", *socket, "error", err)
		}
		logger.Info("certificate received over SDS", "spiffe_id", id.String())
		return p.Run(ctx, listeners...)
	})
	return g.Wait()
}

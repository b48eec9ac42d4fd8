package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// checkDebugListen refuses a debug_listen that is not a loopback
// host:port: the profiles show the server's memory, keys included, so
// they are for the operator on the CA's own host only.
func (c serverConfig) checkDebugListen() error {
	if c.DebugListen == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(c.DebugListen)
	if err != nil {
		return fmt.Errorf("debug_listen %q: must be host:port", c.DebugListen)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("debug_listen %q: must be a loopback address (127.0.0.1:PORT or [::1]:PORT); the profiles it serves are for this host only", c.DebugListen)
	}
	return nil
}

// serveDebug serves Go's /debug/pprof/ profiles on debug_listen until ctx
// ends, for measuring where the server's memory and CPU go. Off by default.
func (c serverConfig) serveDebug(ctx context.Context, logger *slog.Logger) error {
	if c.DebugListen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", c.DebugListen)
	if err != nil {
		return fmt.Errorf("debug_listen %s: %w", c.DebugListen, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		hs.Close()
	}()
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Warn("debug listener stopped", logError, err)
		}
	}()
	logger.Info("serving profiles", logDebugListen, "http://"+ln.Addr().String()+"/debug/pprof/")
	return nil
}

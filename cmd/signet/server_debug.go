package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

// checkDebugListen refuses a debug_listen that is not a loopback
// host:port: the profiles show what the server runs and where its memory
// goes, so they are for the operator on the CA's own host only.
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
	mux.HandleFunc("/debug/pprof/", serveProfile)
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

// serveProfile serves runtime/pprof's profiles in the paths `go tool
// pprof` knows: /debug/pprof/NAME for each named profile (heap, allocs,
// goroutine, ...; ?debug=1 for text), /debug/pprof/profile?seconds=N for
// CPU, and the list of names at /debug/pprof/. It uses runtime/pprof, not
// net/http/pprof, whose HTML index links text/template into the binary
// and makes it keep every exported method (issue 19).
func serveProfile(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/debug/pprof/")
	switch name {
	case "":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		for _, p := range pprof.Profiles() {
			fmt.Fprintf(w, "%s %d\n", p.Name(), p.Count())
		}
		fmt.Fprintln(w, "profile (CPU, ?seconds=30)")
		return
	case "profile":
		secs, err := strconv.Atoi(r.URL.Query().Get("seconds"))
		if err != nil || secs <= 0 {
			secs = 30
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		if err := pprof.StartCPUProfile(w); err != nil {
			http.Error(w, "CPU profile: "+err.Error(), http.StatusConflict)
			return
		}
		select {
		case <-time.After(time.Duration(secs) * time.Second):
		case <-r.Context().Done():
		}
		pprof.StopCPUProfile()
		return
	}
	p := pprof.Lookup(name)
	if p == nil {
		http.Error(w, "no profile named "+strconv.Quote(name), http.StatusNotFound)
		return
	}
	debug, _ := strconv.Atoi(r.URL.Query().Get("debug"))
	if debug > 0 {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	} else {
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	if name == "heap" && r.URL.Query().Get("gc") != "" {
		runtime.GC()
	}
	if err := p.WriteTo(w, debug); err != nil {
		http.Error(w, "profile "+name+": "+err.Error(), http.StatusInternalServerError)
	}
}

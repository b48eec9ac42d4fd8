package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"syscall"
	"time"

	"github.com/signet-mesh/signet/internal/backoff"
)

// profileArgs picks a free loopback port for the server's debug listener
// and makes --profile-dir.
func (b *fleetBench) profileArgs() ([]string, error) {
	if err := os.MkdirAll(b.opts.profileDir, 0o700); err != nil {
		return nil, fmt.Errorf("--profile-dir: %w", err)
	}
	addr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	b.debugAddr = addr
	return []string{"--debug-listen", addr}, nil
}

// saveProfiles writes the server's heap and goroutine profiles, its
// MemStats, its /proc status and its /proc smaps as PHASE.heap.pb.gz,
// PHASE.goroutine.pb.gz, PHASE.heap.txt, PHASE.status and PHASE.smaps in
// --profile-dir. A profile it cannot take is a bench
// error: the figures asked for are missing. The smaps split RssFile by
// mapping: how much of the store file (signet.db) the server has mapped
// at that phase, beside its own binary.
func (b *fleetBench) saveProfiles(phase string) {
	if b.debugAddr == "" {
		return
	}
	for _, name := range []string{"status", "smaps"} {
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", b.server.Process.Pid, name)); err == nil {
			os.WriteFile(filepath.Join(b.opts.profileDir, phase+"."+name), st, 0o600) //nolint:errcheck // checked below with the profiles
		}
	}
	hc := &http.Client{Timeout: time.Minute}
	for _, name := range []string{"heap", "goroutine"} {
		if err := saveProfile(hc, "http://"+b.debugAddr+"/debug/pprof/"+name, filepath.Join(b.opts.profileDir, phase+"."+name+".pb.gz")); err != nil {
			b.fail("%s profile at %s: %v", name, phase, err)
		}
	}
	// The text heap profile ends with the runtime's MemStats: heap in
	// use, goroutine stacks, GC target.
	if err := saveProfile(hc, "http://"+b.debugAddr+"/debug/pprof/heap?debug=1", filepath.Join(b.opts.profileDir, phase+".heap.txt")); err != nil {
		b.fail("heap text profile at %s: %v", phase, err)
	}
}

func saveProfile(hc *http.Client, url, path string) error {
	resp, err := hc.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// benchServerCPUWindow is how long the server's CPU profile of a phase
// runs (the debug listener's profile is taken over a fixed window).
const benchServerCPUWindow = 5 * time.Second

// startBenchProfile, with --profile-dir, takes CPU profiles over a phase:
// of the bench process itself (the simulated agents: the real agent code
// and the harness) as PHASE.bench.cpu.pb.gz until the returned function is
// called, and of the server as PHASE.server.cpu.pb.gz over serverWindow
// from now. The returned function ends both (waiting for the server's
// window) and may be called more than once.
func (b *fleetBench) startBenchProfile(phase string, serverWindow time.Duration) func() {
	if b.opts.profileDir == "" {
		return func() {}
	}
	var wg sync.WaitGroup
	if b.debugAddr != "" {
		wg.Go(func() {
			hc := &http.Client{Timeout: serverWindow + time.Minute}
			url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", b.debugAddr, int(serverWindow/time.Second))
			// A server just started may not listen yet: ask again.
			path := filepath.Join(b.opts.profileDir, phase+".server.cpu.pb.gz")
			err := saveProfile(hc, url, path)
			retry := backoff.New(backoff.Config{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond})
			for deadline := time.Now().Add(time.Minute); errors.Is(err, syscall.ECONNREFUSED) && time.Now().Before(deadline); {
				time.Sleep(retry.Next())
				err = saveProfile(hc, url, path)
			}
			if err != nil {
				b.fail("server CPU profile at %s: %v", phase, err)
			}
		})
	}
	f, err := os.OpenFile(filepath.Join(b.opts.profileDir, phase+".bench.cpu.pb.gz"), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err == nil {
		if err = pprof.StartCPUProfile(f); err != nil {
			f.Close()
			f = nil
		}
	}
	if err != nil {
		b.fail("bench CPU profile at %s: %v", phase, err)
	}
	return sync.OnceFunc(func() {
		if f != nil {
			pprof.StopCPUProfile()
			if err := f.Close(); err != nil {
				b.fail("bench CPU profile at %s: %v", phase, err)
			}
		}
		wg.Wait()
	})
}

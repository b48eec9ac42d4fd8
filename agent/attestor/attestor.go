package attestor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/signet-mesh/signet/agent/internal/logkey"
	"github.com/signet-mesh/signet/internal/peercred"
)

// Selector types this attestor produces.
const (
	SelectorUID    = "unix:uid:"
	SelectorGID    = "unix:gid:"
	SelectorUser   = "unix:user:"
	SelectorGroup  = "unix:group:"
	SelectorPath   = "unix:path:"
	SelectorSHA256 = "unix:sha256:"
)

// maxHashCacheEntries bounds the hash cache. A node runs a few hundred
// distinct executables at most; the bound only matters against a workload
// that keeps producing new binaries, and then the cache simply starts over.
const maxHashCacheEntries = 4096

// Config configures an Attestor.
type Config struct {
	// Logger receives debug notes on selectors left out. Nil discards.
	Logger *slog.Logger
	// ProcRoot is where procfs is mounted. Empty means "/proc"; tests
	// point it at a fake tree.
	ProcRoot string
	// Plugins add selectors of other kinds (agent/k8sattest). Each runs
	// inside the window Attest checks for PID reuse, so what they read
	// of the PID is the connected process's too.
	Plugins []Plugin
}

// Plugin is an attestor of another kind: it adds selectors about process
// pid. It must be safe for concurrent use and may wait, bounded by ctx.
type Plugin interface {
	Selectors(ctx context.Context, pid int32) ([]string, error)
}

// Attestor attests Unix workloads. It is safe for concurrent use.
type Attestor struct {
	log      *slog.Logger
	procRoot string
	plugins  []Plugin
	hashes   hashCache
}

// New returns an Attestor with cfg's zero fields defaulted.
func New(cfg Config) *Attestor {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = "/proc"
	}
	return &Attestor{
		log:      cfg.Logger.With(logkey.Component, "attestor"),
		procRoot: cfg.ProcRoot,
		plugins:  cfg.Plugins,
		hashes:   hashCache{sums: make(map[fileKey]string), inflight: make(map[fileKey]*hashCall)},
	}
}

// Attest returns the selectors of the process with credentials c: uid, gid,
// user and group names (when the names resolve), the executable's path and
// its SHA-256. It fails with ErrProcessGone when the process exited or its
// PID was reused while Attest looked at it, and with ErrNoPID when the PID
// is not visible. ctx bounds the hashing of a large executable.
func (a *Attestor) Attest(ctx context.Context, c peercred.Creds) ([]string, error) {
	if c.PID <= 0 {
		return nil, wrapErr(ErrNoPID)
	}
	procDir := filepath.Join(a.procRoot, strconv.Itoa(int(c.PID)))
	start, err := readStartTime(procDir)
	if err != nil {
		return nil, wrapErr(err)
	}

	sels := []string{SelectorUID + strconv.FormatUint(uint64(c.UID), 10)}
	if u, err := user.LookupId(strconv.FormatUint(uint64(c.UID), 10)); err == nil {
		sels = append(sels, SelectorUser+u.Username)
	}
	sels = append(sels, SelectorGID+strconv.FormatUint(uint64(c.GID), 10))
	if g, err := user.LookupGroupId(strconv.FormatUint(uint64(c.GID), 10)); err == nil {
		sels = append(sels, SelectorGroup+g.Name)
	}

	exeSels, err := a.exeSelectors(ctx, procDir)
	if err != nil {
		return nil, wrapErr(err)
	}
	sels = append(sels, exeSels...)
	for _, p := range a.plugins {
		more, err := p.Selectors(ctx, c.PID)
		if err != nil {
			return nil, wrapErr(err)
		}
		sels = append(sels, more...)
	}

	// Everything read from /proc above must have come from the process that
	// connected: it must still be running, and its PID must not have been
	// reused while we read.
	if c.PIDFD != nil {
		exited, err := c.PIDFD.Exited()
		if err != nil {
			return nil, wrapErr(fmt.Errorf("checking peer process: %w", err))
		}
		if exited {
			return nil, wrapErr(ErrProcessGone)
		}
	}
	if again, err := readStartTime(procDir); err != nil {
		return nil, wrapErr(err)
	} else if again != start {
		return nil, wrapErr(ErrProcessGone)
	}
	return sels, nil
}

// exeSelectors returns the path and hash selectors of the executable of the
// process in procDir. It leaves them out when the agent may not look
// (another user's process and no CAP_SYS_PTRACE).
func (a *Attestor) exeSelectors(ctx context.Context, procDir string) ([]string, error) {
	exe := filepath.Join(procDir, "exe")
	path, err := os.Readlink(exe)
	if err != nil {
		return a.exeError(procDir, "reading executable path", err)
	}
	// Opening the magic link opens the inode the process runs, even if the
	// path now names another file.
	f, err := os.Open(exe)
	if err != nil {
		return a.exeError(procDir, "opening executable", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat executable: %w", err)
	}
	sum, err := a.hashes.sum(ctx, keyOf(fi), f)
	if err != nil {
		return nil, fmt.Errorf("hashing executable: %w", err)
	}
	return []string{SelectorPath + path, SelectorSHA256 + sum}, nil
}

func (a *Attestor) exeError(procDir, what string, err error) ([]string, error) {
	switch {
	case errors.Is(err, fs.ErrPermission):
		a.log.Debug("leaving out path and sha256 selectors", logkey.PID, filepath.Base(procDir), logkey.Error, err)
		return nil, nil
	case errors.Is(err, fs.ErrNotExist):
		return nil, ErrProcessGone
	default:
		return nil, fmt.Errorf("%s: %w", what, err)
	}
}

// readStartTime returns field 22 of /proc/<pid>/stat: when the process
// started, in clock ticks since boot. A PID and its start time together
// name one process for the life of the system.
func readStartTime(procDir string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(procDir, "stat"))
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return 0, ErrProcessGone
	}
	if err != nil {
		return 0, fmt.Errorf("reading process stat: %w", err)
	}
	return parseStartTime(string(b))
}

// parseStartTime extracts the start time from the text of /proc/<pid>/stat.
// The second field, the command name, is in parentheses and may itself hold
// spaces and parentheses, so fields are counted from the last ')'.
func parseStartTime(stat string) (uint64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed process stat: no command name")
	}
	// Fields after the command start at field 3 (state); starttime is 22.
	fields := strings.Fields(stat[i+1:])
	const startField = 22 - 3
	if len(fields) <= startField {
		return 0, fmt.Errorf("malformed process stat: %d fields after the command name", len(fields))
	}
	t, err := strconv.ParseUint(fields[startField], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("malformed process start time: %w", err)
	}
	return t, nil
}

// fileKey identifies one version of a file's contents: a file rewritten in
// place changes mtime and ctime, and ctime cannot be set back by users.
type fileKey struct {
	dev, ino     uint64
	size         int64
	mtime, ctime syscall.Timespec
}

func keyOf(fi fs.FileInfo) fileKey {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		// Not on Linux procfs; key on what portable info there is.
		return fileKey{size: fi.Size(), mtime: syscall.NsecToTimespec(fi.ModTime().UnixNano())}
	}
	return fileKey{dev: uint64(st.Dev), ino: st.Ino, size: st.Size, mtime: st.Mtim, ctime: st.Ctim}
}

// hashCache remembers executable hashes and makes concurrent callers wanting
// the same hash wait for one computation.
type hashCache struct {
	mu       sync.Mutex
	sums     map[fileKey]string
	inflight map[fileKey]*hashCall
	computed int // hashes actually computed, for tests
}

type hashCall struct {
	done chan struct{}
	sum  string
	err  error
}

func (h *hashCache) sum(ctx context.Context, key fileKey, f *os.File) (string, error) {
	for {
		h.mu.Lock()
		if s, ok := h.sums[key]; ok {
			h.mu.Unlock()
			return s, nil
		}
		call, busy := h.inflight[key]
		if !busy {
			call = &hashCall{done: make(chan struct{})}
			h.inflight[key] = call
			h.mu.Unlock()

			call.sum, call.err = hashFile(ctx, f)

			h.mu.Lock()
			delete(h.inflight, key)
			h.computed++
			if call.err == nil {
				if len(h.sums) >= maxHashCacheEntries {
					clear(h.sums)
				}
				h.sums[key] = call.sum
			}
			h.mu.Unlock()
			close(call.done)
			return call.sum, call.err
		}
		h.mu.Unlock()
		select {
		case <-call.done:
			if call.err == nil {
				return call.sum, nil
			}
			// The caller that hashed failed, perhaps because its ctx
			// ended; go round and hash with ours.
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

func hashFile(ctx context.Context, f *os.File) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, ctxReader{ctx, f}); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// ctxReader stops a long read when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

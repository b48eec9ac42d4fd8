package peercred_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signet-mesh/signet/internal/peercred"
)

// staleSocket leaves a socket file at path that nothing listens on, as a
// process that died would.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
}

func TestListenOwned(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, path string)
		wantErr string
	}{
		{name: "fresh path"},
		{name: "stale socket of a dead process", setup: staleSocket},
		{
			name: "regular file",
			setup: func(t *testing.T, path string) {
				if err := os.WriteFile(path, []byte("keep me"), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: "exists and is not a socket",
		},
		{
			name:    "missing directory",
			setup:   func(t *testing.T, path string) { os.Remove(filepath.Dir(path)) },
			wantErr: "opening socket directory",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "agent.sock")
			if tt.setup != nil {
				tt.setup(t, path)
			}
			s, err := peercred.ListenOwned(path, 0o777)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ListenOwned = %v, want an error containing %q", err, tt.wantErr)
				}
				if data, err := os.ReadFile(path); tt.name == "regular file" && (err != nil || string(data) != "keep me") {
					t.Errorf("the file in the way was changed: %q, %v", data, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ListenOwned: %v", err)
			}
			fi, err := os.Stat(path)
			if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o777 {
				t.Fatalf("socket file %v, %v; want a socket with mode 0777", fi, err)
			}
			if err := s.Check(); err != nil {
				t.Errorf("Check of a fresh socket: %v", err)
			}
			conn, err := net.Dial("unix", path)
			if err != nil {
				t.Fatalf("dialing the socket: %v", err)
			}
			conn.Close()
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("socket file left after Close: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
		})
	}
}

// TestListenOwnedLive: a path a live process serves is refused, naming
// that process, and left alone.
func TestListenOwnedLive(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.sock")
	first, err := peercred.ListenOwned(path, 0o777)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	_, err = peercred.ListenOwned(path, 0o777)
	var inUse *peercred.InUseError
	if !errors.As(err, &inUse) || inUse.PID != int32(os.Getpid()) || inUse.Path != path {
		t.Fatalf("second ListenOwned = %v, want an InUseError naming pid %d", err, os.Getpid())
	}
	if err := first.Check(); err != nil {
		t.Errorf("the first socket after a refused second: %v", err)
	}
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("the first socket stopped answering: %v", err)
	}
	conn.Close()
}

// TestCloseLeavesAnotherSocket: a socket whose path was taken over (removed
// and created again by someone else) reports it, and its Close leaves the
// other socket in place.
func TestCloseLeavesAnotherSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.sock")
	old, err := peercred.ListenOwned(path, 0o777)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := old.Check(); err == nil || !strings.Contains(err.Error(), "was removed") {
		t.Errorf("Check after the path was removed = %v, want a removed error", err)
	}
	other, err := peercred.ListenOwned(path, 0o777)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := old.Check(); err == nil || !strings.Contains(err.Error(), "replaced") {
		t.Errorf("Check after the path was taken over = %v, want a replaced error", err)
	}
	if err := old.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := other.Check(); err != nil {
		t.Fatalf("the other socket after the old one closed: %v", err)
	}
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("the other socket stopped answering: %v", err)
	}
	conn.Close()
}

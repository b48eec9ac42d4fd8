package cli

import (
	"strings"
	"testing"
)

var socketPathTests = []struct {
	in      string
	want    string
	wantErr string
}{
	{in: "/run/signet/agent.sock", want: "/run/signet/agent.sock"},
	{in: "signet-data/agent.sock", want: "signet-data/agent.sock"},
	{in: "./a:b.sock", want: "./a:b.sock"},
	{in: "unix:///run/signet/agent.sock", want: "/run/signet/agent.sock"},
	{in: "unix:/run/signet/agent.sock", want: "/run/signet/agent.sock"},
	{in: "UNIX:///run/x.sock", want: "/run/x.sock"},
	{in: "unix:///run/with%20space.sock", want: "/run/with space.sock"},
	{in: "", wantErr: "empty socket address"},
	{in: "tcp://127.0.0.1:8080", wantErr: "Unix socket only"},
	{in: "http://x/agent.sock", wantErr: "Unix socket only"},
	{in: "unix://run/signet/agent.sock", wantErr: `has no host ("run"): write unix:///path, with three slashes`},
	{in: "unix:relative.sock", wantErr: "must be absolute"},
	{in: "unix://", wantErr: "no socket path"},
	{in: "unix:///", wantErr: "no socket path"},
	{in: "unix:///a.sock?x=1", wantErr: "only a path"},
	{in: "unix:///a.sock#frag", wantErr: "only a path"},
	{in: "unix:///%zz", wantErr: "not a URI"},
	{in: "/" + strings.Repeat("a", 200), wantErr: "a Unix socket path holds at most 107"},
}

func TestSocketPath(t *testing.T) {
	for _, tt := range socketPathTests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := SocketPath(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("SocketPath(%q) = %q, %v; want error %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("SocketPath(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

// FuzzSocketPath: SocketPath never panics, and what it accepts is a path
// a Unix socket can have.
func FuzzSocketPath(f *testing.F) {
	for _, tt := range socketPathTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := SocketPath(s)
		if err != nil {
			return
		}
		if got == "" || len(got) > MaxSocketPath {
			t.Fatalf("SocketPath(%q) = %q: not a usable socket path", s, got)
		}
		if strings.HasPrefix(strings.ToLower(s), "unix:") && !strings.HasPrefix(got, "/") {
			t.Fatalf("SocketPath(%q) = %q: a unix: URI must give an absolute path", s, got)
		}
	})
}

package agentcmd

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestJoinTokenFile: join_token wins, the file is read and trimmed, and a
// missing file means no token.
func TestJoinTokenFile(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte("  abc123\n"), 0o600)
	big := filepath.Join(dir, "big")
	os.WriteFile(big, bytes.Repeat([]byte("x"), maxJoinTokenFile+1), 0o600)
	tests := []struct {
		name    string
		cfg     Config
		want    string
		wantErr string
	}{
		{name: "none", cfg: Config{}},
		{name: "inline", cfg: Config{JoinToken: "inline", JoinTokenFile: tokenFile}, want: "inline"},
		{name: "file", cfg: Config{JoinTokenFile: tokenFile}, want: "abc123"},
		{name: "missing file", cfg: Config{JoinTokenFile: filepath.Join(dir, "nope")}},
		{name: "directory", cfg: Config{JoinTokenFile: dir}, wantErr: "join_token_file"},
		{name: "too large", cfg: Config{JoinTokenFile: big}, wantErr: "too large"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.cfg.joinToken()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("joinToken() = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

package agentcmd

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// maxJoinTokenFile bounds what is read from join_token_file: a token is a
// few dozen characters, so anything large is the wrong file.
const maxJoinTokenFile = 4 << 10

// joinToken returns join_token, or else the content of join_token_file.
// A missing file is not an error: a node that already holds an identity in
// data_dir needs no token, and in Kubernetes the file is one key of a
// Secret (named after the node) that operators remove once the node has
// attested.
func (c Config) joinToken() (string, error) {
	if c.JoinToken != "" || c.JoinTokenFile == "" {
		return c.JoinToken, nil
	}
	data, err := os.ReadFile(c.JoinTokenFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("join_token_file: %v", err)
	case len(data) > maxJoinTokenFile:
		return "", fmt.Errorf("join_token_file %s: %d bytes is too large for a join token", c.JoinTokenFile, len(data))
	}
	return strings.TrimSpace(string(data)), nil
}

package attestor

import (
	"errors"
	"fmt"
)

var (
	// ErrProcessGone means the process that connected has exited, or its
	// PID now names another process. Callers answer PermissionDenied.
	ErrProcessGone = errors.New("process exited or was replaced")
	// ErrNoPID means the peer's PID is not visible in the agent's PID
	// namespace, so nothing beyond uid and gid can be learned about it.
	ErrNoPID = errors.New("peer has no PID in this PID namespace")
)

// wrapErr prefixes every error the package returns.
func wrapErr(err error) error {
	return fmt.Errorf("attestor: %w", err)
}

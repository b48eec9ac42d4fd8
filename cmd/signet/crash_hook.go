package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"syscall"

	"github.com/signet-mesh/signet/ca/rotation"
)

// crashPointEnv is for crash-safety tests only. Set to one of
// rotation.CrashPoints ("activate.commit", ...), it makes `signet server`
// kill itself with SIGKILL when a root rotation step reaches that point:
// inside the step's transaction before it commits, or right after. Unset,
// as it always is outside tests, it does nothing.
const crashPointEnv = "SIGNET_TEST_CRASH_AT"

// crashHook returns the rotation.Config.CrashPoint hook that crashPointEnv
// asks for, or nil.
func crashHook(getenv func(string) string, stderr io.Writer) (func(string), error) {
	at := getenv(crashPointEnv)
	if at == "" {
		return nil, nil
	}
	if !slices.Contains(rotation.CrashPoints, at) {
		return nil, fmt.Errorf("%s=%q: not a crash point (%s)", crashPointEnv, at, strings.Join(rotation.CrashPoints, ", "))
	}
	fmt.Fprintf(stderr, "signet: %s=%s: this server will kill itself there (test only)\n", crashPointEnv, at)
	return func(point string) {
		if point != at {
			return
		}
		fmt.Fprintf(stderr, "signet: crash point %s reached: SIGKILL\n", point)
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way; nothing else may run
	}, nil
}

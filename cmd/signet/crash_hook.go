//go:build signet_testhooks

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"syscall"

	"github.com/signet-mesh/signet/ca/rotation"
	"github.com/signet-mesh/signet/ca/server"
	"github.com/signet-mesh/signet/cmd/internal/cli"
)

// crashPointEnv is for crash-safety tests only, and exists only in a
// binary built with -tags signet_testhooks (the end-to-end tests build
// signet so). Set to one of rotation.CrashPoints ("activate.commit",
// ...), it makes `signet server` kill itself with SIGKILL when a root
// rotation step reaches that point: inside the step's transaction before
// it commits, or right after.
const crashPointEnv = "SIGNET_TEST_CRASH_AT"

// newCAServer is server.New, with the crash point crashPointEnv asks for
// and the key encryption cost cli.KDFIterationsEnv sets.
func newCAServer(ctx context.Context, cfg server.Config, getenv func(string) string, stderr io.Writer) (*server.Server, error) {
	hook, err := crashHook(getenv, stderr)
	if err != nil {
		return nil, err
	}
	iter, err := cli.TestKDFIterations(getenv)
	if err != nil {
		return nil, err
	}
	return server.NewForTest(ctx, cfg, server.TestOptions{CrashPoint: hook, KeyKDFIterations: iter})
}

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

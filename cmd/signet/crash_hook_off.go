//go:build !signet_testhooks

package main

import (
	"context"
	"io"

	"github.com/signet-mesh/signet/ca/server"
)

// newCAServer is server.New: a product build has no test hooks (see
// crash_hook.go, built with -tags signet_testhooks).
func newCAServer(ctx context.Context, cfg server.Config, _ func(string) string, _ io.Writer) (*server.Server, error) {
	return server.New(ctx, cfg)
}

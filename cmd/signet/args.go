package main

import (
	"fmt"
	"strings"

	"github.com/signet-mesh/signet/cmd/internal/cli"
	"github.com/spf13/cobra"
)

// exactArgs wants one positional argument per name (ID, SPIFFE_ID, ...).
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return cli.UsageError(c, fmt.Errorf("expected %d argument(s): %s; got %d", len(names), strings.Join(names, " "), len(args)))
		}
		return nil
	}
}

// optionalArg takes at most one positional argument.
func optionalArg(name string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) > 1 {
			return cli.UsageError(c, fmt.Errorf("expected at most one %s; got %d arguments", name, len(args)))
		}
		return nil
	}
}

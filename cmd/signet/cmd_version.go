package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// buildInfo is what `signet version` reports, from the binary's build
// information (runtime/debug): the module version ("(devel)" for a build
// from a work tree), the VCS commit when the build recorded it, and the
// Go version.
type buildInfo struct {
	Version   string
	Commit    string
	Modified  bool
	Time      string
	GoVersion string
}

func readBuildInfo() buildInfo {
	out := buildInfo{Version: "(unknown)", Commit: "unknown", GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return out
	}
	if bi.Main.Version != "" {
		out.Version = bi.Main.Version
	}
	if bi.GoVersion != "" {
		out.GoVersion = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			out.Commit = s.Value
		case "vcs.modified":
			out.Modified = s.Value == "true"
		case "vcs.time":
			out.Time = s.Value
		}
	}
	return out
}

// versionText is the output of `signet version` and `signet --version`.
func versionText() string {
	bi := readBuildInfo()
	var b strings.Builder
	fmt.Fprintf(&b, "signet %s\n", bi.Version)
	commit := bi.Commit
	if bi.Modified {
		commit += " (modified)"
	}
	if bi.Time != "" {
		commit += " " + bi.Time
	}
	fmt.Fprintf(&b, "commit %s\n", commit)
	fmt.Fprintf(&b, "go     %s\n", bi.GoVersion)
	return b.String()
}

func newVersionCommand(env *cliEnv) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print the version, commit and Go version of this binary",
		Example: `  signet version
  signet --version`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprint(env.stdout, versionText())
			return err
		},
	}
}

package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// buildInfo is what `signet version` (and `signet-agent version`) reports, from the binary's build
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

// VersionText is the output of `NAME version` and `NAME --version`, for
// the binary called name (signet, signet-agent).
func VersionText(name string) string {
	bi := readBuildInfo()
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s\n", name, bi.Version)
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

// NewVersionCommand is `NAME version`, for the binary called name.
func NewVersionCommand(name string, env *Env) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "print the version, commit and Go version of this binary",
		Example: "  " + name + " version\n  " + name + " --version",
		Args:    NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprint(env.Stdout, VersionText(name))
			return err
		},
	}
}

// AddVersionFlag gives root -v/--version, printing VersionText(name). It
// stands in for cobra's Version field: cobra prints a custom version
// through text/template, and template execution makes the linker keep
// every exported method of every linked type (reflection may call any),
// megabytes of binary that every process maps. Call it once root's RunE
// is set.
func AddVersionFlag(root *cobra.Command, name string, env *Env) {
	var version bool
	root.Flags().BoolVarP(&version, "version", "v", false, "version for "+name)
	run := root.RunE
	root.RunE = func(c *cobra.Command, args []string) error {
		if version {
			_, err := fmt.Fprint(env.Stdout, VersionText(name))
			return err
		}
		return run(c, args)
	}
}

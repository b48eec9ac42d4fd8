// Package deptest turns the layering rules of signet's packages into
// tests, as tailscale's tstest/deptest does: a test names packages and
// what they must not depend on, with the reason, and fails naming the
// offending edge.
//
//	func TestDeps(t *testing.T) {
//		deptest.Rule{
//			Packages: []string{"github.com/signet-mesh/signet/sds/..."},
//			BadDeps:  map[string]string{"github.com/signet-mesh/signet/ca/...": "sds serves what the agent gives it"},
//		}.Check(t)
//	}
//
// BadDeps are checked against every package the rule's packages depend on,
// directly or not; BadImports only against what they import themselves
// (a store driver may be used through the store package, not beside it).
// Test files are not checked: tests may borrow another side's fixtures.
//
// Symbols goes below the package level: it builds a binary and lists the
// symbols it links, for rules that keep one function of a library, or one
// generic instantiation, out of a binary.
//
// The rules of this module are in rules_test.go. Check runs `go list` and
// Symbols `go build`, so both are skipped under -short.
package deptest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// Rule is one layering rule.
type Rule struct {
	// Packages are the go list patterns the rule covers ("./..." forms
	// are relative to the test's directory; use import paths).
	Packages []string
	// Except are patterns of packages the rule does not cover.
	Except []string
	// BadDeps maps a package pattern ("path" or "path/...") to why no
	// covered package may depend on it, even indirectly.
	BadDeps map[string]string
	// BadImports maps a package pattern to why no covered package may
	// import it directly.
	BadImports map[string]string
}

// Check fails t for each covered package that breaks the rule.
func (r Rule) Check(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs go list")
	}
	pkgs, err := list(r.Packages)
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) == 0 {
		t.Fatalf("no package matches %v", r.Packages)
	}
	for _, p := range pkgs {
		if matchAny(p.ImportPath, r.Except) {
			continue
		}
		for _, dep := range p.Deps {
			if why, ok := match(dep, r.BadDeps); ok {
				t.Errorf("%s depends on %s: %s", p.ImportPath, dep, why)
			}
		}
		for _, imp := range p.Imports {
			if why, ok := match(imp, r.BadImports); ok {
				t.Errorf("%s imports %s: %s", p.ImportPath, imp, why)
			}
		}
	}
}

// pkg is what go list -json says of a package.
type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

func list(patterns []string) ([]pkg, error) {
	args := append([]string{"list", "-json=ImportPath,Imports,Deps"}, patterns...)
	out, err := exec.Command("go", args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("go list %s: %v\n%s", strings.Join(patterns, " "), err, ee.Stderr)
		}
		return nil, fmt.Errorf("go list: %w", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			return pkgs, nil
		} else if err != nil {
			return nil, fmt.Errorf("decoding go list: %w", err)
		}
		pkgs = append(pkgs, p)
	}
}

// match returns the reason of the first pattern of bad that path matches.
func match(path string, bad map[string]string) (string, bool) {
	keys := make([]string, 0, len(bad))
	for k := range bad {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if matches(path, k) {
			return bad[k], true
		}
	}
	return "", false
}

func matchAny(path string, patterns []string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool { return matches(path, p) })
}

// matches reports whether path is pattern, or under it for "x/...".
func matches(path, pattern string) bool {
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return path == base || strings.HasPrefix(path, base+"/")
	}
	return path == pattern
}

// Symbols builds pkg (a main package's import path) as the image does
// (CGO_ENABLED=0, -trimpath, tags), keeping its symbol table, and returns
// the names of the symbols it links: for rules finer than a package, such
// as a function of a library that must stay out of a binary. It is
// skipped under -short.
func Symbols(t testing.TB, pkg, tags string) []string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a binary")
	}
	bin := t.TempDir() + "/bin"
	build := exec.Command("go", "build", "-trimpath", "-tags", tags, "-o", bin, pkg)
	build.Env = append(build.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	out, err := exec.Command("go", "tool", "nm", bin).Output()
	if err != nil {
		t.Fatalf("go tool nm: %v", err)
	}
	var names []string
	for line := range strings.Lines(string(out)) {
		// address type name; the name may hold spaces (generic shapes).
		f := strings.SplitN(strings.TrimSpace(line), " ", 3)
		if len(f) == 3 {
			names = append(names, strings.TrimRight(f[2], "\n"))
		}
	}
	if len(names) == 0 {
		t.Fatalf("go tool nm %s: no symbols", pkg)
	}
	return names
}

package deploy_test

import (
	"bufio"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// dockerignore is a .dockerignore's patterns as Docker (moby's
// patternmatcher) reads them: one per line, # comments, ** for any number
// of directories, * and ? within one, a pattern that matches a directory
// excluding all below it, ! re-including.
type dockerignore []struct {
	re     *regexp.Regexp
	negate bool
}

func loadDockerignore(t *testing.T, path string) dockerignore {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var d dockerignore
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		p := strings.TrimSpace(sc.Text())
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		neg := strings.HasPrefix(p, "!")
		p = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(p, "!"), "/"), "/")
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(p); i++ {
			switch {
			case strings.HasPrefix(p[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(p[i:], "**"):
				re.WriteString(".*")
				i++
			case p[i] == '*':
				re.WriteString("[^/]*")
			case p[i] == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(p[i : i+1]))
			}
		}
		re.WriteString("(/.*)?$") // a directory excludes what is below it
		d = append(d, struct {
			re     *regexp.Regexp
			negate bool
		}{regexp.MustCompile(re.String()), neg})
	}
	return d
}

func (d dockerignore) excludes(path string) bool {
	out := false
	for _, p := range d {
		if p.re.MatchString(path) {
			out = !p.negate
		}
	}
	return out
}

// TestDockerignore: an image build's context (the repository root) keeps
// every file the build needs (every tracked Go source, go.mod, go.sum) and
// leaves out dev state, stores, backups, keys and passphrases wherever they
// lie.
func TestDockerignore(t *testing.T) {
	d := loadDockerignore(t, "../.dockerignore")
	out, err := exec.Command("git", "-C", "..", "ls-files").Output()
	if err != nil {
		t.Skipf("git ls-files: %v", err)
	}
	kept := 0
	for _, f := range strings.Fields(string(out)) {
		if strings.HasSuffix(f, ".go") || f == "go.mod" || f == "go.sum" {
			if d.excludes(f) {
				t.Errorf(".dockerignore leaves %s out of the build context", f)
			}
			kept++
		}
	}
	if kept < 100 {
		t.Errorf("only %d Go sources checked", kept)
	}
	for _, secret := range []string{
		"signet-data/signet.db", "signet-data/keys/root-1.pem", "signet-data/dev-passphrase", "signet-data/agent.sock",
		"deploy/signet-data/x", "var/lib/signet/keys/intermediate.pem", "signet-backup.db", "backups/signet-2026-12-04.db.gpg",
		"key-passphrase", "etc/signet/key-passphrase", "node.key", "audit.jsonl", ".git/config", "signet", "cmd/signet/signet",
	} {
		if !d.excludes(secret) {
			t.Errorf(".dockerignore lets %s into the build context", secret)
		}
	}
}

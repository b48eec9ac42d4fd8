package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// podVar is a Kubernetes $(VAR) reference in container args, and unitSpec a
// systemd specifier (%H): both stand for one word at run time.
var (
	podVar   = regexp.MustCompile(`\$\([A-Z_]+\)`)
	unitSpec = regexp.MustCompile(`%[a-zA-Z]`)
)

// TestDeployCommandLines: the signet command lines the deployments run
// (ExecStart and ExecStartPre of every systemd unit, the args of every
// container of every Kubernetes workload) resolve in signet's own command
// tree with flags it accepts.
func TestDeployCommandLines(t *testing.T) {
	type cmdLine struct {
		where string
		args  []string
	}
	var lines []cmdLine
	err := filepath.WalkDir(filepath.Join(deployDir, "systemd"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".service") {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(data), "\n") {
			key, val, ok := strings.Cut(strings.TrimSpace(line), "=")
			if !ok || (key != "ExecStart" && key != "ExecStartPre") {
				continue
			}
			words := strings.Fields(unitSpec.ReplaceAllString(val, "ca-1"))
			if len(words) == 0 || filepath.Base(words[0]) != "signet" {
				t.Errorf("%s: %s=%s does not run signet", path, key, val)
				continue
			}
			lines = append(lines, cmdLine{path + ": " + key, words[1:]})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(filepath.Join(deployDir, "kubernetes"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
			return err
		}
		for i, doc := range yamlDocuments(t, path) {
			var w struct {
				Kind     string `json:"kind"`
				Metadata struct {
					Name string `json:"name"`
				} `json:"metadata"`
				Spec struct {
					Template struct {
						Spec struct {
							Containers []struct {
								Name string   `json:"name"`
								Args []string `json:"args"`
							} `json:"containers"`
						} `json:"spec"`
					} `json:"template"`
				} `json:"spec"`
			}
			if err := yaml.Unmarshal(doc, &w); err != nil {
				t.Fatalf("%s document %d: %v", path, i, err)
			}
			if w.Kind != "StatefulSet" && w.Kind != "DaemonSet" {
				continue
			}
			for _, c := range w.Spec.Template.Spec.Containers {
				args := make([]string, len(c.Args))
				for j, a := range c.Args {
					args[j] = podVar.ReplaceAllString(a, "signet-server-0")
				}
				lines = append(lines, cmdLine{path + ": " + w.Kind + " " + w.Metadata.Name + " container " + c.Name, args})
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) < 8 {
		t.Fatalf("found %d command lines under %s; the test is not looking where the deployments are", len(lines), deployDir)
	}
	for _, l := range lines {
		if err := parseCommandLine(l.args); err != nil {
			t.Errorf("%s: signet %s: %v", l.where, strings.Join(l.args, " "), err)
		}
	}
	// The check does catch a flag the CLI lacks.
	if err := parseCommandLine([]string{"server", "--config", "/etc/signet/server.yaml", "--server-nam", "ca-1"}); err == nil {
		t.Error("a misspelt flag parsed")
	}
}

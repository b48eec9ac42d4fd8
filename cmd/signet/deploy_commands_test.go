package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/signet-mesh/signet/cmd/internal/agentcmd"
)

// podVar is a Kubernetes $(VAR) reference in container args, and unitSpec a
// systemd specifier (%H): both stand for one word at run time.
var (
	podVar   = regexp.MustCompile(`\$\([A-Z_]+\)`)
	unitSpec = regexp.MustCompile(`%[a-zA-Z]`)
)

// TestDeployCommandLines: the signet and signet-agent command lines the
// deployments run (ExecStart and ExecStartPre of every systemd unit, the
// args and exec probes of every container of every Kubernetes workload)
// resolve in their binary's own command tree with flags it accepts.
func TestDeployCommandLines(t *testing.T) {
	type cmdLine struct {
		where string
		bin   string // signet or signet-agent
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
			if len(words) == 0 || (filepath.Base(words[0]) != "signet" && filepath.Base(words[0]) != agentcmd.Name) {
				t.Errorf("%s: %s=%s does not run signet or signet-agent", path, key, val)
				continue
			}
			lines = append(lines, cmdLine{path + ": " + key, filepath.Base(words[0]), words[1:]})
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
								Name           string   `json:"name"`
								Command        []string `json:"command"`
								Args           []string `json:"args"`
								ReadinessProbe *probe   `json:"readinessProbe"`
								LivenessProbe  *probe   `json:"livenessProbe"`
								StartupProbe   *probe   `json:"startupProbe"`
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
				where := path + ": " + w.Kind + " " + w.Metadata.Name + " container " + c.Name
				// The image's entrypoint is signet; a container may run
				// signet-agent instead.
				bin := "signet"
				switch {
				case len(c.Command) == 1 && filepath.Base(c.Command[0]) == agentcmd.Name:
					bin = agentcmd.Name
				case len(c.Command) > 0:
					t.Errorf("%s: command %v: want the image's entrypoint or %s", where, c.Command, agentcmd.Name)
					continue
				}
				args := make([]string, len(c.Args))
				for j, a := range c.Args {
					args[j] = podVar.ReplaceAllString(a, "signet-server-0")
				}
				lines = append(lines, cmdLine{where, bin, args})
				for _, p := range []*probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
					if p != nil && p.Exec != nil && len(p.Exec.Command) > 0 {
						lines = append(lines, cmdLine{where + " exec probe", filepath.Base(p.Exec.Command[0]), p.Exec.Command[1:]})
					}
				}
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
		if err := parseBinaryCommandLine(l.bin, l.args); err != nil {
			t.Errorf("%s: %s %s: %v", l.where, l.bin, strings.Join(l.args, " "), err)
		}
	}
	// signet-agent's command lines are checked against its own command.
	if err := parseBinaryCommandLine(agentcmd.Name, []string{"agent", "--config", "/etc/signet/agent.yaml"}); err == nil {
		t.Error("signet-agent took `agent` as a command word")
	}
	// The check does catch a flag the CLI lacks.
	if err := parseCommandLine([]string{"server", "--config", "/etc/signet/server.yaml", "--server-nam", "ca-1"}); err == nil {
		t.Error("a misspelt flag parsed")
	}
}

// probe is the part of a Kubernetes probe that runs a command.
type probe struct {
	Exec *struct {
		Command []string `json:"command"`
	} `json:"exec"`
}
